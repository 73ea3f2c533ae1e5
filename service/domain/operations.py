"""Bulk operations: an issue's jobs re-sent, or a window of deliveries replayed, as one piece of
work a person starts, watches and may cancel. What they are, what a request for one says, and
how they show."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import Field

from service.domain.errors import InvalidInput
from service.domain.listing import parse_timestamp
from service.domain.submission import MAX_TENANT_CHARS
from service.domain.views import Time, View


class OperationKind(StrEnum):
    RESEND = "resend"
    REPLAY = "replay"


class OperationState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    CANCELLED = "cancelled"


UNFINISHED = (OperationState.QUEUED.value, OperationState.RUNNING.value)
"""The states a worker claims an operation in (and a person may cancel it in)."""

MAX_PREVIEW_JOBS = 100
"""A dry run lists at most this many job ids; its count is exact."""

NOT_AN_OBJECT = "the body must be a JSON object"
BAD_DRY_RUN = "dryRun must be true or false"
BAD_WINDOW = "since must be before until"
NEEDS_SINCE = "since is required (ISO 8601)"
UNKNOWN_FIELDS = "unknown field(s): {fields}"


def parse_resend_request(body: object) -> bool:
    """`{"dryRun": true}` (or no body): whether only to count. Anything else is refused."""
    if body is None:
        return False
    if not isinstance(body, dict):
        raise InvalidInput(NOT_AN_OBJECT)
    _known(body, ("dryRun",))
    dry_run = body.get("dryRun", False)
    if not isinstance(dry_run, bool):
        raise InvalidInput(BAD_DRY_RUN)
    return dry_run


@dataclass(frozen=True)
class ReplayWindow:
    since: datetime
    until: datetime
    tenant: str | None

    def as_json(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "tenant": self.tenant,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ReplayWindow:
        return cls(
            since=datetime.fromisoformat(data["since"]),
            until=datetime.fromisoformat(data["until"]),
            tenant=data.get("tenant"),
        )


def parse_replay_request(body: object, *, now: datetime) -> ReplayWindow:
    """`{"since", "until"?, "tenant"?}`: the deliveries received in [since, until) (until:
    now when left out), of one company when `tenant` is given."""
    if not isinstance(body, dict):
        raise InvalidInput(NOT_AN_OBJECT)
    _known(body, ("since", "until", "tenant"))
    since_text = body.get("since")
    if not isinstance(since_text, str):
        raise InvalidInput(NEEDS_SINCE)
    since = parse_timestamp(since_text, "since")
    until_text = body.get("until")
    if until_text is not None and not isinstance(until_text, str):
        raise InvalidInput("until must be an ISO 8601 time")
    until = parse_timestamp(until_text, "until") if until_text else now
    if since >= until:
        raise InvalidInput(BAD_WINDOW)
    tenant = body.get("tenant")
    if tenant is not None and (
        not isinstance(tenant, str) or not tenant or len(tenant) > MAX_TENANT_CHARS
    ):
        raise InvalidInput(f"tenant must be a tenant id of up to {MAX_TENANT_CHARS} characters")
    return ReplayWindow(since=since, until=until, tenant=tenant)


def _known(body: dict[str, Any], fields: tuple[str, ...]) -> None:
    unknown = sorted(str(k)[:40] for k in body if k not in fields)
    if unknown:
        raise InvalidInput(UNKNOWN_FIELDS.format(fields=", ".join(unknown)))


class Operation(View):
    """A bulk operation as the API shows it."""

    id: str
    kind: str
    state: str
    origin: dict[str, Any] = Field(default_factory=dict)
    """What it works on: `issueId` (a resend), or `since`, `until`, `tenant` (a replay)."""
    total: int
    """How many items it found to do when it started."""
    done: int
    failed: int
    created_at: Time
    started_at: Time | None = None
    finished_at: Time | None = None
    error: str | None = None


class ResendPreview(View):
    """What a resend of an issue would do: how many jobs, and (the first of) which."""

    issue_id: str
    count: int
    job_ids: list[str]


def operation_json(operation: object) -> dict[str, Any]:
    return Operation.model_validate(operation).as_json()
