"""`/openapi.json` and `/docs`: the API described from the models that parse and render it.

The schemas come from the same pydantic models the handlers use (`domain.JobCreate` parses a
submission, `domain.views` renders jobs and status-page state, `web.schemas` the inbox, alerts,
pages and errors), so the document cannot drift from what the service does. What the models
cannot say (routes, parameters, status codes) is written once here, beside the routes it
describes.
"""

from __future__ import annotations

import functools
import importlib.resources
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from service.domain import (
    IDEMPOTENCY_HEADER,
    MAX_KEY_CHARS,
    MAX_PAGE_SIZE,
    REPLAYED_HEADER,
    BatchCreate,
    Component,
    ComponentDetail,
    Incident,
    Issue,
    JobCreate,
    JobDetail,
    JobResult,
    JobView,
    Operation,
    ResendPreview,
)
from service.web.schemas import AlertView, DeliveryDetail, DeliveryView, ErrorBody, PageMetadata

OPENAPI_VERSION = "3.1.0"
_REF = "#/components/schemas/{model}"

_MODELS: list[tuple[type[BaseModel], JsonSchemaMode]] = [
    (JobCreate, "validation"),
    (BatchCreate, "validation"),
    (JobView, "serialization"),
    (JobDetail, "serialization"),
    (JobResult, "serialization"),
    (Component, "serialization"),
    (ComponentDetail, "serialization"),
    (Incident, "serialization"),
    (DeliveryView, "serialization"),
    (DeliveryDetail, "serialization"),
    (AlertView, "serialization"),
    (Issue, "serialization"),
    (Operation, "serialization"),
    (ResendPreview, "serialization"),
    (PageMetadata, "serialization"),
    (ErrorBody, "serialization"),
]


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": _REF.format(model=model.__name__)}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _page(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["items", "metadata"],
        "properties": {"items": {"type": "array", "items": item}, "metadata": _ref(PageMetadata)},
    }


def _error(description: str) -> dict[str, Any]:
    return _json(_ref(ErrorBody), description)


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


_PAGING = [
    _query(
        "pageSize",
        f"items per page; above {MAX_PAGE_SIZE} is capped",
        {"type": "integer", "minimum": 1, "maximum": 999_999_999},
    ),
    _query(
        "pageNumber",
        "1-based page number",
        {"type": "integer", "minimum": 1, "maximum": 999_999_999},
    ),
]
_CONDITION = {"type": "string", "enum": [">", "<", ">=", "<="]}
_TIME = {"type": "string", "format": "date-time"}
_JOB_ID = {
    "name": "job_id",
    "in": "path",
    "required": True,
    "description": "the job's id (or b64(<base64url>) of it)",
    "schema": {"type": "string", "minLength": 1, "maxLength": 200},
}
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
_STARTED = {
    "description": "the operation, queued; `Location` is where its progress shows",
    "headers": {"Location": {"schema": {"type": "string"}}},
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Operation"}}},
}
_READ_ERRORS = {
    "400": _error("a query parameter is wrong; `detail` names it"),
    "401": _error("no or wrong bearer token"),
}
_WRITE_ERRORS = {
    **_READ_ERRORS,
    "403": _error("the token may only read (API_READ_TOKENS)"),
}
_IDEMPOTENCY_KEY = {
    "name": IDEMPOTENCY_HEADER,
    "in": "header",
    "required": False,
    "description": (
        "makes a retry safe: the first request with a key makes the job; a repeat of the same "
        "request (method, path, body, tags, tenant, notify, ifMatch, callbackUrl) within "
        "IDEMPOTENCY_KEY_DAYS answers that job (200) and sends nothing to Visma; another request "
        "with the key is refused (422). Keys belong to a company. The draft standard's quoted "
        'form ("key") is the same key.'
    ),
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_CHARS + 2},
}
_JOB_HEADERS = {
    "Location": {"schema": {"type": "string"}, "description": "the job's URL"},
    "ETag": {"schema": {"type": "string"}},
}
_BATCH_RESULT = {
    "type": "object",
    "required": ["index", "status"],
    "properties": {
        "index": {"type": "integer", "description": "the job's place in the request's list"},
        "status": {
            "type": "integer",
            "description": "201 made; 200 made earlier with its idempotencyKey; 4xx refused",
        },
        "job": _ref(JobView),
        "error": _ref(ErrorBody),
    },
}
_JOB_STATES = ["submitted", "accepted", "succeeded", "failed", "expired", "rejected"]


def _paths() -> dict[str, Any]:
    job = _ref(JobDetail)
    return {
        "/api/v1/jobs": {
            "post": {
                "operationId": "create_job",
                "summary": "Submit a request to run in Visma as a background call",
                "parameters": [_IDEMPOTENCY_KEY],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref(JobCreate)}},
                },
                "responses": {
                    "201": {
                        **_json(job, "the job, as stored once Visma answered"),
                        "headers": _JOB_HEADERS,
                    },
                    "200": {
                        **_json(
                            job,
                            "a repeat of an earlier request with this Idempotency-Key: "
                            "its job as it stands now; nothing was sent",
                        ),
                        "headers": {
                            **_JOB_HEADERS,
                            REPLAYED_HEADER: {"schema": {"type": "string", "enum": ["true"]}},
                        },
                    },
                    **_WRITE_ERRORS,
                    "400": _error(
                        "a field is wrong (or the body is not a JSON object), or the "
                        "Idempotency-Key is not 1-255 printable ASCII characters"
                    ),
                    "409": {
                        **_error(
                            "idempotency_key_in_use: a request with this key is still being "
                            "written; retry after Retry-After seconds"
                        ),
                        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
                    },
                    "413": _error("the body is larger than MAX_SUBMIT_BYTES"),
                    "422": _error(
                        "idempotency_key_reused: the key made a job from a different request"
                    ),
                    "503": _error("Visma credentials are not configured, or the database is down"),
                },
            },
            "get": {
                "operationId": "list_jobs",
                "summary": "List jobs, newest first",
                "description": "Tags filter as `tag.<key>=<value>` (any number of them).",
                "parameters": [
                    _query(
                        "state", "comma-separated states", {"type": "string", "enum": _JOB_STATES}
                    ),
                    _query(
                        "tenant",
                        "comma-separated companies (tenant ids of VISMA_TENANT_ID)",
                        {"type": "string", "maxLength": 1000},
                    ),
                    _query("vismaJobId", "Visma's job id", {"type": "string", "maxLength": 64}),
                    _query("lastModifiedDateTime", "compare lastModifiedAt with this", _TIME),
                    _query("lastModifiedDateTimeCondition", "how (default >=)", _CONDITION),
                    _query("createdDateTime", "compare submittedAt with this", _TIME),
                    _query("createdDateTimeCondition", "how (default >=)", _CONDITION),
                    *_PAGING,
                ],
                "responses": {
                    "200": _json(_page(_ref(JobView)), "one page of jobs"),
                    **_READ_ERRORS,
                },
            },
        },
        "/api/v1/jobs/batch": {
            "post": {
                "operationId": "create_jobs_batch",
                "summary": "Submit many jobs at once; each is sent as its company's budget allows",
                "description": (
                    "At most MAX_BATCH_JOBS jobs and MAX_BATCH_BYTES. Every good job is stored "
                    "(one transaction) before the answer, which comes at once; the jobs are "
                    "sent afterwards, as each company's rate budget allows. A bad job is "
                    "refused alone; results keep the request's order."
                ),
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref(BatchCreate)}},
                },
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["results"],
                            "properties": {"results": {"type": "array", "items": _BATCH_RESULT}},
                        },
                        "how each job went, in the request's order",
                    ),
                    **_WRITE_ERRORS,
                    "400": _error('not {"jobs": [...]}, no jobs, or more than MAX_BATCH_JOBS'),
                    "409": _error("idempotency_key_in_use: other requests hold the batch's keys"),
                    "413": _error("the body is larger than MAX_BATCH_BYTES"),
                    "503": _error("Visma credentials are not configured, or the database is down"),
                },
            }
        },
        "/api/v1/jobs/{job_id}": {
            "get": {
                "operationId": "get_job",
                "summary": "One job with its timeline; optionally wait for it to change",
                "parameters": [
                    _JOB_ID,
                    _query(
                        "wait",
                        "with If-None-Match: answer as soon as the job's ETag differs, else 304 "
                        "after this many seconds; while MAX_WAITERS long polls are held, "
                        "answered at once as without wait, with `Retry-After: 1` (ask again)",
                        {"type": "integer", "minimum": 0, "maximum": 60},
                    ),
                    _query(
                        "until",
                        "with wait: `finished` answers once the job has ended (not on its first "
                        "change), else the job as it stands (304 if its ETag is the one sent) "
                        "when the wait is over",
                        {"type": "string", "enum": ["finished"]},
                    ),
                    {
                        "name": "If-None-Match",
                        "in": "header",
                        "required": False,
                        "description": "the ETag you hold; 304 while it is still the job's",
                        "schema": {"type": "string"},
                    },
                ],
                "responses": {
                    "200": {
                        **_json(job, "the job"),
                        "headers": {
                            "ETag": {"schema": {"type": "string"}},
                            "Retry-After": {
                                "description": "a wait turned away: ask again after it",
                                "schema": {"type": "integer"},
                            },
                        },
                    },
                    "304": {"description": "the job's ETag is still the one given"},
                    "404": _error("no such job"),
                    **_READ_ERRORS,
                },
            }
        },
        "/api/v1/jobs/{job_id}/result": {
            "get": {
                "operationId": "get_job_result",
                "summary": "What the finished request returned, kept after Visma forgets it",
                "parameters": [_JOB_ID],
                "responses": {
                    "200": _json(_ref(JobResult), "the kept result"),
                    "404": _error("no such job, or it has no result (yet)"),
                    **_READ_ERRORS,
                },
            }
        },
        "/api/v1/deliveries": {
            "get": {
                "operationId": "list_deliveries",
                "summary": "The webhook inbox, newest first",
                "parameters": [
                    _query(
                        "notificationId",
                        "the dispatcher's notification id",
                        {"type": "string", "maxLength": 128},
                    ),
                    _query(
                        "matched",
                        "linked to a job or not",
                        {"type": "string", "enum": ["true", "false"]},
                    ),
                    _query(
                        "kind", "visma or status", {"type": "string", "enum": ["visma", "status"]}
                    ),
                    _query(
                        "event",
                        "the deliveries of one event id (x-vwd-event-id, exactly)",
                        {"type": "string", "maxLength": 128},
                    ),
                    *_PAGING,
                ],
                "responses": {
                    "200": _json(_page(_ref(DeliveryView)), "one page of deliveries"),
                    **_READ_ERRORS,
                },
            }
        },
        "/api/v1/deliveries/{delivery_id}": {
            "get": {
                "operationId": "get_delivery",
                "summary": "One stored delivery, with its forwards and their attempts",
                "parameters": [
                    {
                        "name": "delivery_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "minLength": 1, "maxLength": 200},
                    }
                ],
                "responses": {
                    "200": _json(_ref(DeliveryDetail), "the delivery and its forwards"),
                    "404": _error("no such delivery"),
                    **_READ_ERRORS,
                },
            }
        },
        "/api/v1/deliveries/{delivery_id}/replay": {
            "post": {
                "operationId": "replay_delivery",
                "summary": "Run a stored delivery through correlation and resolution again",
                "description": "Idempotent: a settled job stays settled; its timeline says so.",
                "parameters": [
                    {
                        "name": "delivery_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "minLength": 1, "maxLength": 200},
                    }
                ],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["deliveryId", "jobId", "job"],
                            "properties": {
                                "deliveryId": {"type": "string"},
                                "jobId": {"type": ["string", "null"]},
                                "job": {"anyOf": [job, {"type": "null"}]},
                            },
                        },
                        "the delivery's job as it stands after the replay (null: it names none)",
                    ),
                    "404": _error("no such delivery"),
                    "409": _error("not a Visma delivery (status-page deliveries are not replayed)"),
                    **_WRITE_ERRORS,
                },
            }
        },
        "/api/v1/status/components": {
            "get": {
                "operationId": "list_components",
                "summary": "Status-page components and their current status",
                "parameters": [
                    _query("status", "comma-separated statuses", {"type": "string"}),
                    _query(
                        "component",
                        "one component's id or name (adds its history)",
                        {"type": "string"},
                    ),
                    *_PAGING,
                ],
                "responses": {
                    "200": _json(
                        _page({"anyOf": [_ref(ComponentDetail), _ref(Component)]}),
                        "one page of components",
                    ),
                    **_READ_ERRORS,
                },
            }
        },
        "/api/v1/status/incidents": {
            "get": {
                "operationId": "list_incidents",
                "summary": "Status-page incidents and maintenance, with their updates",
                "parameters": [
                    _query("status", "comma-separated statuses", {"type": "string"}),
                    _query(
                        "component", "affecting this component (id or name)", {"type": "string"}
                    ),
                    *_PAGING,
                ],
                "responses": {
                    "200": _json(_page(_ref(Incident)), "one page of incidents"),
                    **_READ_ERRORS,
                },
            }
        },
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
                    _query(
                        "state",
                        "comma-separated: open, acknowledged, resolved, ignored",
                        {"type": "string"},
                    ),
                    _query("tenant", "comma-separated company ids", {"type": "string"}),
                    *_PAGING,
                ],
                "responses": {
                    "200": _json(_page(_ref(Issue)), "one page of issues"),
                    **_READ_ERRORS,
                },
            }
        },
        "/api/v1/issues/{issue_id}": {
            "get": {
                "operationId": "get_issue",
                "summary": "One issue, with one page of its jobs (newest first)",
                "parameters": [_ISSUE_ID, *_PAGING],
                "responses": {
                    "200": _json(
                        {
                            "allOf": [
                                _ref(Issue),
                                {
                                    "type": "object",
                                    "required": ["jobs"],
                                    "properties": {"jobs": _page(_ref(JobView))},
                                },
                            ]
                        },
                        "the issue and a page of its jobs",
                    ),
                    **_READ_ERRORS,
                    "404": _error("no such issue"),
                },
            }
        },
        "/api/v1/issues/{issue_id}/acknowledge": {
            "post": {
                "operationId": "acknowledge_issue",
                "summary": "Mark the issue acknowledged: someone is on it (from open)",
                "parameters": [_ISSUE_ID],
                "responses": {
                    "200": _json(_ref(Issue), "the issue, acknowledged (already so: unchanged)"),
                    **_WRITE_ERRORS,
                    "404": _error("no such issue"),
                    "409": _error("invalid_state: the issue's state does not allow it"),
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
                    "200": _json(_ref(Issue), "the issue, resolved (already so: unchanged)"),
                    **_WRITE_ERRORS,
                    "404": _error("no such issue"),
                    "409": _error("invalid_state: the issue's state does not allow it"),
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
                    "200": _json(_ref(Issue), "the issue, ignored (already so: unchanged)"),
                    **_WRITE_ERRORS,
                    "404": _error("no such issue"),
                    "409": _error("invalid_state: the issue's state does not allow it"),
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
                    "200": _json(_ref(ResendPreview), "dry run: what a resend would take"),
                    "202": _STARTED,
                    **_WRITE_ERRORS,
                    "404": _error("no such issue"),
                    "413": _error("the body is larger than 4 KiB"),
                },
            }
        },
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
                                    "since": _TIME,
                                    "until": _TIME,
                                    "tenant": {"type": "string"},
                                },
                                "additionalProperties": False,
                            }
                        }
                    },
                },
                "responses": {
                    "202": _STARTED,
                    **_WRITE_ERRORS,
                    "413": _error("the body is larger than 4 KiB"),
                },
            }
        },
        "/api/v1/operations/{operation_id}": {
            "get": {
                "operationId": "get_operation",
                "summary": "A bulk operation's progress: state, total, done, failed",
                "parameters": [_OPERATION_ID],
                "responses": {
                    "200": _json(_ref(Operation), "the operation"),
                    **_READ_ERRORS,
                    "404": _error("no such operation"),
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
                    "200": _json(_ref(Operation), "the operation, cancelled"),
                    **_WRITE_ERRORS,
                    "404": _error("no such operation"),
                    "409": _error("invalid_state: the operation has ended"),
                },
            }
        },
        "/api/v1/alerts": {
            "get": {
                "operationId": "list_alerts",
                "summary": "Alerts raised, and every attempt at delivering each",
                "parameters": [
                    _query("kind", "comma-separated alert kinds", {"type": "string"}),
                    *_PAGING,
                ],
                "responses": {
                    "200": _json(_page(_ref(AlertView)), "one page of alerts"),
                    **_READ_ERRORS,
                },
            }
        },
    }


@functools.cache
def openapi_document() -> dict[str, Any]:
    """The OpenAPI document of every `/api/` route (built once per process)."""
    _, definitions = models_json_schema(_MODELS, ref_template=_REF)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "visma-hooks",
            "version": "1",
            "description": (
                "Run Visma.net ERP API requests as background calls and learn how they ended. "
                'Errors are `{"error", "detail"}`.'
            ),
        },
        "security": [{"bearer": []}],
        "paths": _paths(),
        "components": {
            "schemas": definitions.get("$defs", {}),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "one of API_TOKENS (or API_READ_TOKENS, to read only)",
                }
            },
        },
    }


async def get_openapi(_request: Request) -> Response:
    return JSONResponse(openapi_document())


# The page ships inside the package (web/docs.html) with its script and style in /static/
# (the site's Content-Security-Policy allows nothing inline) and loads nothing from elsewhere.
_DOCS_HTML = (importlib.resources.files("service.web") / "docs.html").read_text("utf-8")


async def get_docs(_request: Request) -> Response:
    return HTMLResponse(_DOCS_HTML)
