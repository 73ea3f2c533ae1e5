"""The OpenAPI route table of `/api/v1/issues` (failures grouped by cause, and their resend)
and of the bulk operations (`/api/v1/deliveries/replay`, `/api/v1/operations/...`)."""

from __future__ import annotations

from typing import Any

from service.domain import (
    Issue,
    JobView,
    Operation,
    ResendPreview,
)
from service.web.openapi_common import (
    PAGING,
    READ_ERRORS,
    STARTED,
    TIME,
    WRITE_ERRORS,
    error,
    json_content,
    page,
    query,
    ref,
)

_ISSUE_ID = {
    "name": "issue_id",
    "in": "path",
    "required": True,
    "description": "the issue's id",
    "schema": {"type": "string", "minLength": 1, "maxLength": 200},
}
_OPERATION_ID = {
    "name": "operation_id",
    "in": "path",
    "required": True,
    "description": "the operation's id",
    "schema": {"type": "string", "minLength": 1, "maxLength": 200},
}


def issue_paths() -> dict[str, Any]:
    """The routes of issues."""
    return {
        "/api/v1/issues": {
            "get": {
                "operationId": "list_issues",
                "summary": "Failures grouped by cause (company, outcome, fault, method, path)",
                "description": (
                    "A failed, rejected or expired job belongs to the issue of its cause: its "
                    "company, its state, Visma's fault code (else the HTTP status, else why it "
                    "expired), its method and its path with ids replaced by {id}. Most "
                    "recently failed first."
                ),
                "parameters": [
                    query(
                        "state",
                        "comma-separated: open, acknowledged, resolved, ignored",
                        {"type": "string"},
                    ),
                    query("tenant", "comma-separated company ids", {"type": "string"}),
                    *PAGING,
                ],
                "responses": {
                    "200": json_content(page(ref(Issue)), "one page of issues"),
                    **READ_ERRORS,
                },
            }
        },
        "/api/v1/issues/{issue_id}": {
            "get": {
                "operationId": "get_issue",
                "summary": "One issue, with one page of its jobs (newest first)",
                "parameters": [_ISSUE_ID, *PAGING],
                "responses": {
                    "200": json_content(
                        {
                            "allOf": [
                                ref(Issue),
                                {
                                    "type": "object",
                                    "required": ["jobs"],
                                    "properties": {"jobs": page(ref(JobView))},
                                },
                            ]
                        },
                        "the issue and a page of its jobs",
                    ),
                    **READ_ERRORS,
                    "404": error("no such issue"),
                },
            }
        },
        "/api/v1/issues/{issue_id}/acknowledge": {
            "post": {
                "operationId": "acknowledge_issue",
                "summary": "Mark the issue acknowledged: someone is on it (from open)",
                "parameters": [_ISSUE_ID],
                "responses": {
                    "200": json_content(
                        ref(Issue), "the issue, acknowledged (already so: unchanged)"
                    ),
                    **WRITE_ERRORS,
                    "404": error("no such issue"),
                    "409": error("invalid_state: the issue's state does not allow it"),
                },
            }
        },
        "/api/v1/issues/{issue_id}/resolve": {
            "post": {
                "operationId": "resolve_issue",
                "summary": "Mark the issue resolved (from open or acknowledged)",
                "description": "A new failure of its cause reopens it.",
                "parameters": [_ISSUE_ID],
                "responses": {
                    "200": json_content(ref(Issue), "the issue, resolved (already so: unchanged)"),
                    **WRITE_ERRORS,
                    "404": error("no such issue"),
                    "409": error("invalid_state: the issue's state does not allow it"),
                },
            }
        },
        "/api/v1/issues/{issue_id}/ignore": {
            "post": {
                "operationId": "ignore_issue",
                "summary": "Mark the issue ignored (from open, acknowledged or resolved)",
                "description": "Its failures still count; it raises no more alerts.",
                "parameters": [_ISSUE_ID],
                "responses": {
                    "200": json_content(ref(Issue), "the issue, ignored (already so: unchanged)"),
                    **WRITE_ERRORS,
                    "404": error("no such issue"),
                    "409": error("invalid_state: the issue's state does not allow it"),
                },
            }
        },
        "/api/v1/issues/{issue_id}/resend": {
            "post": {
                "operationId": "resend_issue",
                "summary": "Send the issue's jobs again (after its cause was fixed), as new jobs",
                "description": (
                    'Takes the issue\'s jobs not re-sent yet. With `{"dryRun": true}` it only '
                    "counts them (and lists the first ones); else it starts a bulk operation "
                    "(202). Each new job names the old one (`resentFrom`, and `resentAs` on "
                    "the old one), is recorded before it is sent, and is sent as its company's "
                    "rate budget allows. A second resend finds nothing left."
                ),
                "parameters": [_ISSUE_ID],
                "requestBody": {
                    "required": False,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {"dryRun": {"type": "boolean", "default": False}},
                                "additionalProperties": False,
                            }
                        }
                    },
                },
                "responses": {
                    "200": json_content(ref(ResendPreview), "dry run: what a resend would take"),
                    "202": STARTED,
                    **WRITE_ERRORS,
                    "404": error("no such issue"),
                    "413": error("the body is larger than 4 KiB"),
                },
            }
        },
    }


def operation_paths() -> dict[str, Any]:
    """The routes that start and follow bulk operations."""
    return {
        "/api/v1/deliveries/replay": {
            "post": {
                "operationId": "replay_deliveries",
                "summary": "Replay every stored Visma delivery received in a window",
                "description": (
                    "As the single replay does, each delivery in turn, as a bulk operation. "
                    "`until` defaults to now; `tenant` keeps to one company's deliveries."
                ),
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["since"],
                                "properties": {
                                    "since": TIME,
                                    "until": TIME,
                                    "tenant": {"type": "string"},
                                },
                                "additionalProperties": False,
                            }
                        }
                    },
                },
                "responses": {
                    "202": STARTED,
                    **WRITE_ERRORS,
                    "413": error("the body is larger than 4 KiB"),
                },
            }
        },
        "/api/v1/operations/{operation_id}": {
            "get": {
                "operationId": "get_operation",
                "summary": "A bulk operation's progress: state, total, done, failed",
                "parameters": [_OPERATION_ID],
                "responses": {
                    "200": json_content(ref(Operation), "the operation"),
                    **READ_ERRORS,
                    "404": error("no such operation"),
                },
            }
        },
        "/api/v1/operations/{operation_id}/cancel": {
            "post": {
                "operationId": "cancel_operation",
                "summary": "Stop a queued or running operation before its next step",
                "description": "What it did stays done; cancelling a cancelled one does nothing.",
                "parameters": [_OPERATION_ID],
                "responses": {
                    "200": json_content(ref(Operation), "the operation, cancelled"),
                    **WRITE_ERRORS,
                    "404": error("no such operation"),
                    "409": error("invalid_state: the operation has ended"),
                },
            }
        },
    }
