"""The job state machine and what a Visma background state means for a job.

    submitted ──202──> accepted ──> succeeded | failed | expired
        └──refused──> rejected

States only move forward: a late or repeated event never moves a job back; it is still kept in
the job's timeline.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from service.domain.status import parse_time
from service.domain.visma_errors import (
    HINT_NOT_SENT,
    HINT_READ_FORBIDDEN,
    VismaErrorInfo,
    hint_for,
    is_visma_error,
    parse_error,
)


class JobState(StrEnum):
    SUBMITTED = "submitted"
    ACCEPTED = "accepted"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    EXPIRED = "expired"
    REJECTED = "rejected"


TERMINAL_STATES = frozenset(
    {JobState.SUCCEEDED, JobState.FAILED, JobState.EXPIRED, JobState.REJECTED}
)
OPEN_STATES = frozenset({JobState.SUBMITTED, JobState.ACCEPTED})
_RANK = {JobState.SUBMITTED: 0, JobState.ACCEPTED: 1}


class EventKind(StrEnum):
    SUBMITTED = "submitted"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    SUBMIT_UNCERTAIN = "submit_uncertain"
    WEBHOOK = "webhook"
    STATE_READ = "state_read"
    STATE_READ_FAILED = "state_read_failed"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    EXPIRED = "expired"
    IGNORED = "ignored"
    RESENT = "resent"
    ADOPTED = "visma_id_adopted"
    REPLAYED = "replayed"
    SEND_DEFERRED = "send_deferred"
    """The request waits for its company's rate budget; it goes out later, by itself."""
    READ_DEFERRED = "state_read_deferred"
    """Visma answered a state read 429: the next read waits its whole Retry-After."""


class Resolver(StrEnum):
    WEBHOOK = "webhook"
    POLL = "poll"


def can_move(current: JobState, target: JobState) -> bool:
    """True when `target` is further along than `current` (the only moves allowed)."""
    if current in TERMINAL_STATES:
        return False
    if target in TERMINAL_STATES:
        return True
    return _RANK[target] > _RANK[current]


@dataclass(frozen=True)
class BackgroundState:
    """What `GET /v1/background/{id}` said, keys read without regard to case."""

    visma_job_id: str | None
    status: str
    status_code: int
    has_content: bool
    error_message: str | None
    response_headers: dict[str, str] = field(default_factory=dict)
    original_uri: str | None = None
    received_at: datetime | None = None
    method: str | None = None
    """The original request's method, if the state says (the documented DTO does not)."""

    @property
    def done(self) -> bool:
        """Whether Visma has finished with the job, one way or another."""
        return self.status.lower() in ("finished", "failed")


def parse_background_state(data: Mapping[str, Any]) -> BackgroundState:
    """A `BackgroundRequestStateDto` as plain values; tolerant of missing and odd-cased keys."""
    fields = {str(k).lower(): v for k, v in data.items()}
    headers = fields.get("responseheaders")
    try:
        status_code = int(fields.get("statuscode") or 0)
    except (TypeError, ValueError):
        status_code = 0
    return BackgroundState(
        visma_job_id=_str_or_none(fields.get("id")),
        status=str(fields.get("status") or ""),
        status_code=status_code,
        has_content=bool(fields.get("hasresponsecontent")),
        error_message=_str_or_none(fields.get("errormessage")),
        response_headers=(
            {str(k): _header_value(v) for k, v in headers.items()}
            if isinstance(headers, Mapping)
            else {}
        ),
        original_uri=_str_or_none(fields.get("originaluri")),
        received_at=parse_time(fields.get("receivedutc")),
        method=_str_or_none(fields.get("method") or fields.get("httpmethod")),
    )


@dataclass(frozen=True)
class Outcome:
    """How a finished background job ended, ready to store."""

    state: JobState
    http_status: int | None
    created_resource_id: str | None = None
    error: VismaErrorInfo | None = None
    hint: str | None = None
    note: str | None = None
    result_etag: str | None = None
    """The resource's new version after a successful update: the response's `ETag`, else the
    `timeStamp` of its content (what a next `ifMatch` must name)."""


def needs_content(state: BackgroundState) -> bool:
    """Whether the outcome depends on `/content` (the error body of a failure)."""
    return state.done and state.has_content and not _is_success(state)


def decide_outcome(state: BackgroundState, content: bytes | None = None) -> Outcome | None:
    """The job's outcome, or None while Visma is still working on it."""
    if not state.done:
        return None
    if _is_success(state):
        note = None
        if state.status_code == 202:
            note = (
                "Visma accepted the action (HTTP 202): it may still be running inside Visma "
                "after the background job finished"
            )
        return Outcome(
            state=JobState.SUCCEEDED,
            http_status=state.status_code,
            created_resource_id=created_resource_id(state.response_headers),
            note=note,
            result_etag=result_etag(state.response_headers, content),
        )
    http_status = state.status_code or None
    error = parse_error(content, status_code=http_status, error_message=state.error_message)
    return Outcome(
        state=JobState.FAILED,
        http_status=http_status,
        error=error,
        hint=hint_for(error, status_code=http_status),
    )


def decide_rejection(status_code: int, body: bytes) -> Outcome:
    """The outcome of a submission Visma refused instead of answering 202 (see
    `decide_submit_failure` for which answers are refusals)."""
    error = parse_error(body, status_code=status_code)
    return Outcome(
        state=JobState.REJECTED,
        http_status=status_code,
        error=error,
        hint=hint_for(error, status_code=status_code),
    )


UNCERTAIN_NO_ANSWER = "no answer from Visma ({message}): the request may have reached Visma and run"
UNCERTAIN_GATEWAY = (
    "HTTP {status} without Visma's error body (a gateway's answer, not Visma's): the request "
    "may have reached Visma and run"
)


def decide_submit_failure(status: int | None, body: bytes, *, message: str) -> Outcome | str:
    """What a submission's answer other than 202 means: the refusal to record, or (a text) why
    its fate is unknown.

    Only Visma's own answer proves a refusal: a 4xx, or a 5xx whose body is Visma's error
    JSON. A timeout, a connection closed after the request was sent, or a 5xx from a gateway
    (502/503/504 with an HTML page, say) may hide a request that ran: such a job waits for its
    webhook, and is never sent again on its own (a background call is not idempotent).
    """
    if status is None:
        return UNCERTAIN_NO_ANSWER.format(message=message)
    # Below 500 (a 4xx, or a redirect we never follow) the request was not run.
    if status < 500 or is_visma_error(body):
        return decide_rejection(status, body)
    return UNCERTAIN_GATEWAY.format(status=status)


def decide_read_failure(status: int | None) -> Outcome | None:
    """The outcome a failed state or content read forces, or None to try again later.

    403 means the job was made by another company or user than the one reading it: that never
    heals, so the job ends `failed` at once instead of being retried until its TTL.
    """
    if status != 403:
        return None
    error = VismaErrorInfo(type="Forbidden", message="Visma answered 403 to the job's state read")
    return Outcome(state=JobState.FAILED, http_status=None, error=error, hint=HINT_READ_FORBIDDEN)


ADOPTION_CLOCK_SKEW = timedelta(minutes=5)
"""How far Visma's clock may be behind ours when it says it received a request."""


@dataclass(frozen=True)
class SubmittedRequest:
    """What we sent for a job: what Visma's state for its job must describe."""

    method: str
    path: str
    submitted_at: datetime


def decide_adoption(request: SubmittedRequest, state: BackgroundState) -> str | None:
    """None if Visma's state can be the job's (so the job may take its Visma job id), else why
    it cannot.

    A webhook's `vh-job-id` header is not signed, so the Visma job id its body names is only a
    candidate: the state must name the job's path (`originalUri`, in any base layout) and
    query, the method when the state gives one (the documented DTO has no method field; some
    answers may carry one), and it must not have been received before we sent the request.
    """
    if state.original_uri is None:
        return "the state names no originalUri"
    wanted, given = urlsplit(request.path), urlsplit(state.original_uri)
    if not _same_path(given.path, wanted.path):
        return f"it is for {given.path}, not {wanted.path}"
    if sorted(parse_qsl(given.query)) != sorted(parse_qsl(wanted.query)):
        return f"its query ({given.query or 'none'}) is not the job's ({wanted.query or 'none'})"
    if state.method is not None and state.method.upper() != request.method.upper():
        return f"it was a {state.method.upper()}, not a {request.method.upper()}"
    if state.received_at is not None and state.received_at < (
        request.submitted_at - ADOPTION_CLOCK_SKEW
    ):
        return "Visma received it before the job was submitted"
    return None


def _same_path(given: str, wanted: str) -> bool:
    # originalUri is absolute and may carry an older layout's prefix (/API/controller/...).
    given_path = unquote(given).rstrip("/").lower()
    wanted_path = unquote(wanted).rstrip("/").lower()
    return bool(wanted_path) and given_path.endswith(wanted_path)


def decide_not_sent(message: str, *, status: int | None) -> Outcome:
    """The outcome of a submission that never reached Visma (no connection, no token)."""
    return Outcome(
        state=JobState.REJECTED,
        http_status=status,
        error=VismaErrorInfo(type="NotSent", message=f"not sent to Visma: {message}"),
        hint=HINT_NOT_SENT,
    )


def decide_completed(status: int, *, location: str | None) -> Outcome:
    """Visma answered the call at once with a 2xx instead of queueing it: it did the work."""
    return Outcome(
        state=JobState.SUCCEEDED,
        http_status=status,
        created_resource_id=created_resource_id({"Location": location} if location else {}),
        note=f"Visma answered at once (HTTP {status}) instead of running it in the background",
    )


def result_etag(headers: Mapping[str, str], content: bytes | None) -> str | None:
    """The new ETag a finished request reported: its `ETag` header, else the `timeStamp` of
    its JSON content (Visma writes the version both ways)."""
    for name, value in headers.items():
        if name.lower() == "etag" and value:
            return value
    if content:
        try:
            data = json.loads(content)
        except ValueError:
            return None
        if isinstance(data, dict):
            stamp = {str(k).lower(): v for k, v in data.items()}.get("timestamp")
            if isinstance(stamp, str) and stamp:
                return stamp
    return None


def created_resource_id(headers: Mapping[str, str]) -> str | None:
    """The last path segment of the `Location` header (how Visma names what it created)."""
    for name, value in headers.items():
        if name.lower() == "location" and value:
            segment = value.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
            return segment or None
    return None


def _is_success(state: BackgroundState) -> bool:
    return state.status.lower() == "finished" and 200 <= state.status_code < 300


def _header_value(value: object) -> str:
    # Some serialisers render multi-valued headers as lists.
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def _str_or_none(value: object) -> str | None:
    return None if value in (None, "") else str(value)
