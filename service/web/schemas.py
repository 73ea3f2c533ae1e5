"""JSON in and out of the API (names as in DESIGN.md section 2)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from service.domain import (
    InvalidInput,
    Page,
    validate_if_match,
    validate_method,
    validate_path,
    validate_tags,
)
from service.domain.jsontext import parse_json
from service.flows import JobRequest
from service.flows.views import component_json, incident_json, iso, job_json
from service.store import Alert, AlertAttempt, AlertDelivery, Delivery

__all__ = [
    "JobCreate",
    "alert_json",
    "component_json",
    "delivery_json",
    "etag_of",
    "incident_json",
    "iso",
    "job_json",
    "page_json",
    "parse_job_create",
    "redact_url",
    "validation_detail",
]

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
        data = parse_json(raw)
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


def alert_json(
    alert: Alert,
    deliveries: Sequence[AlertDelivery],
    attempts: Mapping[int, Sequence[AlertAttempt]],
    *,
    now: datetime,
) -> dict[str, Any]:
    """Alert JSON, with where it stands and every delivery attempt with the target's answer."""
    return {
        **alert.body,
        "status": _alert_status(alert, deliveries, now=now),
        "raisedAt": iso(alert.raised_at),
        "dueAt": iso(alert.due_at),
        "deliveries": [
            {
                "channel": d.channel,
                "target": redact_url(d.target),
                "state": d.state,
                "nextAttemptAt": iso(d.next_attempt_at),
                "sentAt": iso(d.sent_at),
                "attempts": [
                    {
                        "at": iso(a.at),
                        "statusCode": a.status_code,
                        "error": a.error,
                        "answer": a.answer,
                    }
                    for a in attempts.get(d.id, ())
                ],
            }
            for d in deliveries
        ],
    }


def _alert_status(alert: Alert, deliveries: Sequence[AlertDelivery], *, now: datetime) -> str:
    """held (waiting for its noise window), queued, suppressed, recorded (no targets),
    sending, sent (every target answered 2xx), gone (every target is done and one answered
    410 Gone, so it was not tried again) or failed (a target was given up)."""
    if alert.state != "dispatched":
        if alert.state == "pending":
            return "held" if alert.due_at is not None and alert.due_at > now else "queued"
        return alert.state
    states = {d.state for d in deliveries}
    if not states:
        return "recorded"
    if "failed" in states:
        return "failed"
    if "pending" in states:
        return "sending"
    return "gone" if "gone" in states else "sent"


def redact_url(url: str) -> str:
    """A target without the parts that hold secrets (a Slack URL's path is its token)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    digest = hashlib.sha256(url.encode()).hexdigest()[:8]
    return f"{parts.scheme}://{host}/...#{digest}"


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
