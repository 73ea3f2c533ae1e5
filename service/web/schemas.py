"""JSON in and out of the API (names as in DESIGN.md section 2)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from service.domain import (
    InvalidInput,
    Page,
    validate_if_match,
    validate_method,
    validate_path,
    validate_tags,
)
from service.flows import JobRequest
from service.store import Delivery, Job, JobEvent

_In = TypeVar("_In")
_Out = TypeVar("_Out")

BODY_NOT_JSON = "request body must be a JSON object"


class JobCreate(BaseModel):
    """`POST /api/v1/jobs`."""

    model_config = ConfigDict(extra="forbid", strict=True)

    method: str
    path: str
    body: Any = None
    tags: dict[str, Any] = {}
    ifMatch: str | None = None
    notify: bool = True

    @field_validator("method")
    @classmethod
    def _method(cls, value: str) -> str:
        return _domain_check(validate_method, value)

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        return _domain_check(validate_path, value)

    @field_validator("ifMatch")
    @classmethod
    def _if_match(cls, value: str | None) -> str | None:
        return None if value is None else _domain_check(validate_if_match, value)

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: dict[str, Any]) -> dict[str, str]:
        return _domain_check(validate_tags, value)

    def to_request(self) -> JobRequest:
        body = None
        if self.body is not None:
            body = json.dumps(self.body, separators=(",", ":"), ensure_ascii=False).encode()
        return JobRequest(
            method=self.method,
            path=self.path,
            body=body,
            tags=dict(self.tags),
            if_match=self.ifMatch,
            notify=self.notify,
        )


def parse_job_create(raw: bytes) -> JobCreate:
    """The submission in `raw`, or InvalidInput that says which field is wrong and why."""
    try:
        data = json.loads(raw)
    except ValueError:
        raise InvalidInput(f"{BODY_NOT_JSON}; it is not valid JSON") from None
    if not isinstance(data, dict):
        raise InvalidInput(BODY_NOT_JSON)
    try:
        return JobCreate.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput(validation_detail(exc)) from None


def validation_detail(exc: ValidationError) -> str:
    """Pydantic's errors as one line: `field: message; field: message`."""
    parts = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(p) for p in error["loc"]) or "body"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown field"
        parts.append(f"{where}: {message}")
    return "; ".join(parts)


def _domain_check(check: Callable[[_In], _Out], value: _In) -> _Out:
    # Domain checks raise InvalidInput; pydantic wants ValueError to report the field.
    try:
        return check(value)
    except InvalidInput as exc:
        raise ValueError(exc.detail) from None


def iso(value: datetime | None) -> str | None:
    """UTC ISO 8601 with a Z, as Visma writes timestamps."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def job_json(job: Job, events: Sequence[JobEvent] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": job.id,
        "vismaJobId": job.visma_job_id,
        "state": job.state,
        "method": job.method,
        "path": job.path,
        "tags": job.tags or {},
        "httpStatus": job.http_status,
        "createdResourceId": job.created_resource_id,
        "error": job.error,
        "hint": job.hint,
        "resolvedBy": job.resolved_by,
        "notify": job.notify,
        "resultEtag": job.result_etag,
        "submittedAt": iso(job.submitted_at),
        "acceptedAt": iso(job.accepted_at),
        "finishedAt": iso(job.finished_at),
        "lastModifiedAt": iso(job.last_modified_at),
    }
    if events is not None:
        data["events"] = [
            {"at": iso(e.at), "kind": e.kind, "source": e.source, "detail": e.detail or {}}
            for e in events
        ]
    return data


def etag_of(data: dict[str, Any]) -> str:
    """A strong ETag over the representation, so any change to the job or its timeline shows."""
    raw = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    return '"' + hashlib.sha256(raw).hexdigest()[:32] + '"'


def delivery_json(delivery: Delivery) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "kind": delivery.kind,
        "notificationId": delivery.notification_id,
        "eventId": delivery.event_id,
        "receivedAt": iso(delivery.received_at),
        "verified": delivery.verified,
        "matched": delivery.job_id is not None,
        "jobId": delivery.job_id,
        "claimedJobId": delivery.claimed_job_id,
        "vismaJobId": delivery.visma_job_id,
        "problem": delivery.problem,
        "headers": delivery.headers,
        "body": delivery.body.decode("utf-8", errors="replace"),
    }


def page_json(
    items: list[dict[str, Any]], *, total: int, page: Page, max_size: int
) -> dict[str, Any]:
    return {
        "items": items,
        "metadata": {
            "totalCount": total,
            "maxPageSize": max_size,
            "pageNumber": page.number,
            "pageSize": page.size,
        },
    }
