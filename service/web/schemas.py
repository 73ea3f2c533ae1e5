"""JSON the HTTP layer alone shows (the inbox, alerts with their attempts, pages), and ETags.

Jobs and status-page state are shown as `domain.views` renders them, as alerts carry them."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from service.domain import Page, iso, redact_url
from service.store import Alert, AlertAttempt, AlertDelivery, Delivery
from service.visma import SIGNATURE_HEADER

__all__ = [
    "AlertView",
    "DeliveryDetail",
    "DeliveryView",
    "ForwardView",
    "ErrorBody",
    "PageMetadata",
    "alert_json",
    "delivery_detail_json",
    "delivery_json",
    "etag_of",
    "page_json",
    "redact_headers",
    "redact_url",
]


class ErrorBody(BaseModel):
    """Every error the API answers."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"error": "not_found", "detail": "no job with id 'x'"}]}
    )

    error: str = Field(description="a short code: bad_request, unauthorized, not_found, ...")
    detail: str = Field(description="what is wrong, in words")


class PageMetadata(BaseModel):
    """Visma's paging convention: the filter's total and the page shown."""

    totalCount: int
    maxPageSize: int
    pageNumber: int
    pageSize: int


class DeliveryView(BaseModel):
    """A webhook delivery as the inbox shows it (secrets redacted)."""

    id: str
    kind: str
    notificationId: str | None
    eventId: str | None
    receivedAt: str | None
    verified: bool
    matched: bool
    jobId: str | None
    claimedJobId: str | None
    vismaJobId: str | None
    problem: str | None
    headers: dict[str, Any]
    body: str


class AlertAttemptView(BaseModel):
    at: str | None
    statusCode: int | None
    error: str | None
    answer: str | None


class AlertDeliveryView(BaseModel):
    channel: str
    target: str
    state: str
    nextAttemptAt: str | None
    sentAt: str | None
    attempts: list[AlertAttemptView]


class ForwardView(BaseModel):
    """A routed event's forward to one target (EVENT_ROUTES), and every attempt at it."""

    target: str
    state: str = Field(description="pending, sent, gone (the target answered 410) or failed")
    nextAttemptAt: str | None
    sentAt: str | None
    attempts: list[AlertAttemptView]


class DeliveryDetail(DeliveryView):
    """A webhook delivery with its forwards (none for an event no route names)."""

    forwards: list[ForwardView]


class AlertView(BaseModel):
    """Alert JSON (what hooks receive, whose subject varies with `kind`) with where it stands."""

    model_config = ConfigDict(extra="allow")

    id: str
    kind: str
    summary: str
    at: str | None = None
    status: str
    raisedAt: str | None
    dueAt: str | None
    deliveries: list[AlertDeliveryView]


def etag_of(data: dict[str, Any]) -> str:
    """A strong ETag over the representation, so any change to the job or its timeline shows."""
    raw = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    return '"' + hashlib.sha256(raw).hexdigest()[:32] + '"'


REDACTED = "[redacted]"
# A signature and its body are all a replay needs: the inbox keeps them for audit, the API
# never shows them (nor credentials a sender may have put in a header).
_SECRET_HEADERS = frozenset({SIGNATURE_HEADER, "authorization", "proxy-authorization", "cookie"})


def redact_headers(headers: Mapping[str, Any]) -> dict[str, Any]:
    """`headers` with the values that could be replayed or reused replaced by `REDACTED`."""
    return {
        name: REDACTED if name.lower() in _SECRET_HEADERS else value
        for name, value in headers.items()
    }


def delivery_json(delivery: Delivery) -> dict[str, Any]:
    return _shown(
        DeliveryView,
        {
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
            "headers": redact_headers(delivery.headers),
            "body": delivery.body.decode("utf-8", errors="replace"),
        },
    )


def delivery_detail_json(
    delivery: Delivery,
    forwards: Sequence[AlertDelivery],
    attempts: Mapping[int, Sequence[AlertAttempt]],
) -> dict[str, Any]:
    """A delivery with its forwards and their attempts (targets redacted as alerts' are)."""
    return _shown(
        DeliveryDetail,
        {**delivery_json(delivery), "forwards": [_outbound(f, attempts) for f in forwards]},
    )


def _outbound(
    delivery: AlertDelivery, attempts: Mapping[int, Sequence[AlertAttempt]]
) -> dict[str, Any]:
    """One outbox row as the API shows it: where it goes, where it stands, every attempt."""
    return {
        "channel": delivery.channel,
        "target": redact_url(delivery.target),
        "state": delivery.state,
        "nextAttemptAt": iso(delivery.next_attempt_at),
        "sentAt": iso(delivery.sent_at),
        "attempts": [
            {"at": iso(a.at), "statusCode": a.status_code, "error": a.error, "answer": a.answer}
            for a in attempts.get(delivery.id, ())
        ],
    }


def _shown(view: type[BaseModel], data: dict[str, Any]) -> dict[str, Any]:
    """`data` as `view` renders it: the model the OpenAPI document shows is the one used."""
    return view.model_validate(data).model_dump(mode="json")


def alert_json(
    alert: Alert,
    deliveries: Sequence[AlertDelivery],
    attempts: Mapping[int, Sequence[AlertAttempt]],
    *,
    now: datetime,
) -> dict[str, Any]:
    """Alert JSON, with where it stands and every delivery attempt with the target's answer."""
    return _shown(
        AlertView,
        {
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
        },
    )


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


def page_json(
    items: list[dict[str, Any]], *, total: int, page: Page, max_size: int
) -> dict[str, Any]:
    metadata = PageMetadata(
        totalCount=total, maxPageSize=max_size, pageNumber=page.number, pageSize=page.size
    )
    return {"items": items, "metadata": metadata.model_dump()}
