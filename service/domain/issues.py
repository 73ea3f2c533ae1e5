"""Failures grouped by their cause: a job that failed, was rejected or expired belongs to the
issue of its company, outcome, cause (Visma's fault code, else the HTTP status, else why it
expired), method and path template. One licence that expired fails every job of that kind
until someone fixes it; the issue is where that someone looks, once.

Pure decisions: which issue a job's outcome belongs to, and which state moves a person may make.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from service.domain.errors import InvalidInput, InvalidState
from service.domain.jobs import JobState
from service.domain.lifecycle import (
    EXPIRED_FORGOTTEN,
    EXPIRED_NO_ANSWER,
    EXPIRED_UNKNOWN_SUBMISSION,
)
from service.domain.views import Time, View

ISSUE_KINDS = (JobState.FAILED, JobState.REJECTED, JobState.EXPIRED)
"""The outcomes that make an issue (a success makes none)."""


class IssueState(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
    IGNORED = "ignored"


ISSUE_STATES = frozenset(s.value for s in IssueState)


class IssueAction(StrEnum):
    """What a person may do to an issue (`POST /api/v1/issues/{id}/<action>`)."""

    ACKNOWLEDGE = "acknowledge"
    RESOLVE = "resolve"
    IGNORE = "ignore"


_MOVES: dict[IssueAction, tuple[frozenset[IssueState], IssueState]] = {
    IssueAction.ACKNOWLEDGE: (frozenset({IssueState.OPEN}), IssueState.ACKNOWLEDGED),
    IssueAction.RESOLVE: (
        frozenset({IssueState.OPEN, IssueState.ACKNOWLEDGED}),
        IssueState.RESOLVED,
    ),
    IssueAction.IGNORE: (
        frozenset({IssueState.OPEN, IssueState.ACKNOWLEDGED, IssueState.RESOLVED}),
        IssueState.IGNORED,
    ),
}

CANNOT_MOVE = "issue {issue_id} is {state}: it cannot be {done} (allowed from {allowed})"
UNKNOWN_ACTION = "unknown issue action {action!r}: use acknowledge, resolve or ignore"


def parse_action(value: str) -> IssueAction:
    try:
        return IssueAction(value)
    except ValueError:
        raise InvalidInput(UNKNOWN_ACTION.format(action=value[:40])) from None


def allowed_actions(state: str) -> list[IssueAction]:
    """The moves a person may make from `state` (what the dashboard offers as buttons)."""
    return [action for action, (allowed, _) in _MOVES.items() if state in allowed]


def move_issue(issue_id: str, current: str, action: IssueAction) -> IssueState:
    """The state `action` takes the issue to. Asking for the state it is already in changes
    nothing (a retried click is not an error); any other move from the wrong state is refused."""
    allowed, target = _MOVES[action]
    if current == target:
        return target
    if IssueState(current) not in allowed:
        done = {"acknowledge": "acknowledged", "resolve": "resolved", "ignore": "ignored"}
        raise InvalidState(
            CANNOT_MOVE.format(
                issue_id=issue_id,
                state=current,
                done=done[action],
                allowed=", ".join(sorted(allowed)),
            )
        )
    return target


REOPENED_FROM = IssueState.RESOLVED
"""A new failure reopens a resolved issue; an acknowledged or ignored one stays as it is (the
store applies it in the one statement that counts the failure)."""


# A path segment that names one record rather than a kind of them: it holds a digit (order
# and invoice numbers, internal ids, GUIDs) or is written b64(...). Visma's version prefix
# ("v1", "v2") is the exception. A record named by letters alone (a customer "ACME") cannot be
# told from an entity name and stays in the template, so its failures make an issue of their own.
_VERSION = re.compile(r"v[0-9]+")
_RECORD = re.compile(r".*[0-9].*|b64\(.*\)")
MAX_PATH_TEMPLATE_CHARS = 500


def path_template(path: str) -> str:
    """`/v1/customerInvoice/000123/action/release` -> `/v1/customerInvoice/{id}/action/release`
    (the query string is left out: it filters, it does not name the kind of work)."""
    bare = path.split("?", 1)[0].split("#", 1)[0]
    segments = [
        "{id}"
        if segment and not _VERSION.fullmatch(segment) and _RECORD.fullmatch(segment)
        else segment
        for segment in bare.split("/")
    ]
    return "/".join(segments)[:MAX_PATH_TEMPLATE_CHARS]


_EXPIRY_REASONS = (
    ("forgotten", EXPIRED_FORGOTTEN.split("{", 1)[0]),
    ("no_answer", EXPIRED_NO_ANSWER.split("{", 1)[0]),
    ("unknown_submission", EXPIRED_UNKNOWN_SUBMISSION.split("{", 1)[0]),
)


def expiry_reason(note: str | None) -> str:
    """Why a job expired, as a short name (the note's details differ from job to job)."""
    for name, prefix in _EXPIRY_REASONS:
        if note and note.startswith(prefix):
            return name
    return "unknown"


@dataclass(frozen=True)
class IssueCause:
    """What makes two failures the same issue."""

    tenant: str
    kind: str
    fault_code: str | None
    http_status: int | None
    expiry_reason: str | None
    method: str
    path_template: str

    @property
    def key(self) -> str:
        """A fixed-length key of the cause, unique in the database (one issue per cause)."""
        parts = (
            self.tenant,
            self.kind,
            self.fault_code or "",
            "" if self.fault_code else str(self.http_status or ""),
            self.expiry_reason or "",
            self.method,
            self.path_template,
        )
        return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()


def issue_cause(
    *,
    tenant: str,
    state: str,
    error: dict[str, Any] | None,
    http_status: int | None,
    note: str | None,
    method: str,
    path: str,
) -> IssueCause | None:
    """The cause of a job's outcome, or None when the outcome makes no issue (a success)."""
    if state not in ISSUE_KINDS:
        return None
    fault = error.get("faultCode") if isinstance(error, dict) else None
    fault_code = str(fault)[:64] if fault else None
    return IssueCause(
        tenant=tenant,
        kind=state,
        fault_code=fault_code,
        # The fault code says more than the status it came with; without one, the status.
        http_status=None if fault_code else http_status,
        expiry_reason=expiry_reason(note) if state == JobState.EXPIRED else None,
        method=method.upper(),
        path_template=path_template(path),
    )


class IncidentRef(View):
    """The status-page incident that was open when the issue's failures began."""

    id: str
    name: str | None = None
    status: str | None = None
    shortlink: str | None = None


class Issue(View):
    """An issue as the API shows it."""

    id: str
    tenant: str
    kind: str
    state: str
    fault_code: str | None = None
    http_status: int | None = None
    expiry_reason: str | None = None
    method: str
    path_template: str
    message: str | None = None
    """The first job's error message (or, for an expiry, why it expired)."""
    hint: str | None = None
    first_seen_at: Time
    last_seen_at: Time
    job_count: int
    first_job_id: str | None = None
    incident: IncidentRef | None = None
    state_changed_at: Time | None = None
    resolved_at: Time | None = None


def issue_json(issue: object, *, incident: object | None = None) -> dict[str, Any]:
    """The issue's JSON, from its row (and the incident row it names, if that is kept)."""
    data = Issue.model_validate(issue).as_json()
    data["incident"] = IncidentRef.model_validate(incident).as_json() if incident else None
    return data


def cause_words(issue: Mapping[str, Any]) -> str | None:
    """An issue's cause as people read it (its JSON): `fault 12027`, `HTTP 422`, `no answer`;
    None when its kind is all there is. The alert, the CLI and the dashboard all say it so."""
    if issue.get("faultCode"):
        return f"fault {issue['faultCode']}"
    if issue.get("httpStatus"):
        return f"HTTP {issue['httpStatus']}"
    reason = issue.get("expiryReason")
    return str(reason).replace("_", " ") if reason else None


def issue_summary(issue: dict[str, Any], *, reopened: bool) -> str:
    """One line for the alert of an issue that opened or reopened."""
    cause = cause_words(issue) or issue["kind"]
    verb = "reopened" if reopened else "opened"
    return (
        f"Issue {verb}: {issue['tenant']}: jobs {issue['kind']} ({cause}) on "
        f"{issue['method']} {issue['pathTemplate']}"
    )
