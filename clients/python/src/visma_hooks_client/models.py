"""What the service answers, as typed dataclasses. Field names are the JSON's in snake case;
`tests/test_python_client.py` compares them with the service's OpenAPI document."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

TERMINAL_STATES = frozenset({"succeeded", "failed", "expired", "rejected"})


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def json_names(cls: type[Any]) -> set[str]:
    """The JSON property names a model reads (its fields in camel case)."""
    return {_camel(f.name) for f in fields(cls)}


def _time(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(re.sub(r"Z$", "+00:00", value))


@dataclass(frozen=True)
class JobError:
    """What Visma said went wrong."""

    message: str
    type: str | None = None
    fault_code: str | None = None
    message_id: str | None = None
    body: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobError:
        return cls(
            message=data.get("message", ""),
            type=data.get("type"),
            fault_code=data.get("faultCode"),
            message_id=data.get("messageId"),
            body=data.get("body"),
        )


@dataclass(frozen=True)
class Event:
    """One entry of a job's timeline."""

    at: datetime
    kind: str
    source: str
    detail: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Event:
        at = _time(data["at"])
        assert at is not None
        return cls(at=at, kind=data["kind"], source=data["source"], detail=data.get("detail", {}))


@dataclass(frozen=True)
class Job:
    """A job: what was sent to Visma, where it stands, and (when ended) how it ended.

    `events` and `callback` are there when the job was read on its own (`Client.get`), not
    in lists."""

    id: str
    state: str
    method: str
    path: str
    notify: bool
    submitted_at: datetime
    last_modified_at: datetime
    visma_job_id: str | None = None
    tenant: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    http_status: int | None = None
    created_resource_id: str | None = None
    error: JobError | None = None
    hint: str | None = None
    resolved_by: str | None = None
    callback_url: str | None = None
    idempotency_key: str | None = None
    issue_id: str | None = None
    """The issue (failures of one cause) the job's failure belongs to."""
    resent_from: str | None = None
    """The job this one sends again."""
    resent_as: str | None = None
    """The job that sent this one again (an issue's resend, or `submit --resend`)."""
    result_etag: str | None = None
    accepted_at: datetime | None = None
    finished_at: datetime | None = None
    events: list[Event] | None = None
    callback: dict[str, Any] | None = None
    etag: str | None = field(default=None, compare=False)
    """The answer's ETag (what `wait` sends as If-None-Match); not part of the JSON."""

    @property
    def finished(self) -> bool:
        """Whether the job has ended (succeeded, failed, expired or rejected)."""
        return self.state in TERMINAL_STATES

    @classmethod
    def from_json(cls, data: dict[str, Any], *, etag: str | None = None) -> Job:
        submitted, modified = _time(data["submittedAt"]), _time(data["lastModifiedAt"])
        assert submitted is not None and modified is not None
        events = data.get("events")
        return cls(
            id=data["id"],
            state=data["state"],
            method=data["method"],
            path=data["path"],
            notify=data["notify"],
            submitted_at=submitted,
            last_modified_at=modified,
            visma_job_id=data.get("vismaJobId"),
            tenant=data.get("tenant"),
            tags=dict(data.get("tags") or {}),
            http_status=data.get("httpStatus"),
            created_resource_id=data.get("createdResourceId"),
            error=JobError.from_json(data["error"]) if data.get("error") else None,
            hint=data.get("hint"),
            resolved_by=data.get("resolvedBy"),
            callback_url=data.get("callbackUrl"),
            idempotency_key=data.get("idempotencyKey"),
            issue_id=data.get("issueId"),
            resent_from=data.get("resentFrom"),
            resent_as=data.get("resentAs"),
            result_etag=data.get("resultEtag"),
            accepted_at=_time(data.get("acceptedAt")),
            finished_at=_time(data.get("finishedAt")),
            events=None if events is None else [Event.from_json(e) for e in events],
            callback=data.get("callback"),
            etag=etag,
        )


@dataclass(frozen=True)
class ApiError:
    """An error as the service words it: a short code and what is wrong."""

    error: str
    detail: str


@dataclass(frozen=True)
class BatchResult:
    """How one job of a batch went: 201 made, 200 made earlier with its key, 4xx refused."""

    index: int
    status: int
    job: Job | None = None
    error: ApiError | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BatchResult:
        job, error = data.get("job"), data.get("error")
        return cls(
            index=data["index"],
            status=data["status"],
            job=None if job is None else Job.from_json(job),
            error=None if error is None else ApiError(error["error"], error["detail"]),
        )


@dataclass(frozen=True)
class JobResult:
    """What a finished job's request returned, as the service kept it."""

    job_id: str
    status: int | None
    headers: dict[str, str]
    content_type: str | None
    content: str | None
    content_encoding: str | None
    size: int
    truncated: bool
    stored_at: datetime | None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobResult:
        return cls(
            stored_at=_time(data.get("storedAt")),
            job_id=data["jobId"],
            status=data.get("status"),
            headers=dict(data.get("headers") or {}),
            content_type=data.get("contentType"),
            content=data.get("content"),
            content_encoding=data.get("contentEncoding"),
            size=data.get("size", 0),
            truncated=data.get("truncated", False),
        )
