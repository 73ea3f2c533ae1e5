"""`POST /webhooks/visma`: verify, store durably (group commit), acknowledge. Nothing more.

The job's outcome is read from Visma afterwards, by the resolver, never inside this request.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from service.domain import job_id_from_headers, read_background_body
from service.domain.deliveries import PROBLEM_NO_NOTIFICATION_ID
from service.store import DeliveryRecord, IngestUnavailable
from service.visma import signatures
from service.web.errors import error_response
from service.web.state import State

NO_SECRETS = "VISMA_WEBHOOK_SECRETS is not set: every delivery is refused"
BAD_SIGNATURE = f"missing or invalid {signatures.SIGNATURE_HEADER} signature"
NOT_STORED = "the delivery could not be stored; retry later"
SOURCE_NOT_ALLOWED = "this source address is not in ALLOWED_SOURCE_IPS"


class BodyTooLarge(Exception):
    pass


async def receive_visma_webhook(request: Request[State]) -> Response:
    settings = request.state["settings"]
    if settings.ALLOWED_SOURCE_IPS and client_ip(request) not in settings.ALLOWED_SOURCE_IPS:
        return error_response(403, "forbidden", SOURCE_NOT_ALLOWED)
    try:
        body = await read_body(request, settings.MAX_BODY_BYTES)
    except BodyTooLarge:
        return error_response(
            413, "too_large", f"body is larger than MAX_BODY_BYTES={settings.MAX_BODY_BYTES}"
        )
    secrets = settings.webhook_secrets()
    if not secrets:
        return error_response(401, "unauthorized", NO_SECRETS)
    if not signatures.verify(body, request.headers.get(signatures.SIGNATURE_HEADER), secrets):
        return error_response(401, "unauthorized", BAD_SIGNATURE)
    record = delivery_record(dict(request.headers), body)
    try:
        stored = await request.state["ingest"].store(record)
    except IngestUnavailable:
        return error_response(503, "unavailable", NOT_STORED, headers={"Retry-After": "5"})
    if not stored:
        return JSONResponse({"status": "duplicate", "notificationId": record.notification_id})
    return JSONResponse(
        {"status": "stored", "deliveryId": record.id, "matchedJob": record.claimed_job_id}
    )


def delivery_record(headers: dict[str, str], body: bytes) -> DeliveryRecord:
    """A verified delivery as an inbox row; an unusable body is kept with its problem named."""
    notice, problem = read_background_body(body)
    notification_id = headers.get(signatures.NOTIFICATION_ID_HEADER) or None
    if notification_id is None:
        problem = PROBLEM_NO_NOTIFICATION_ID if problem is None else problem
    visma_job_id = notice.visma_job_id if notice else None
    return DeliveryRecord(
        id=str(uuid.uuid4()),
        kind="visma",
        notification_id=notification_id,
        event_id=headers.get(signatures.EVENT_ID_HEADER),
        received_at=datetime.now(UTC),
        headers=headers,
        body=body,
        verified=True,
        claimed_job_id=job_id_from_headers(headers),
        visma_job_id=visma_job_id,
        problem=problem,
        event_detail={
            "notificationId": notification_id,
            "vismaJobId": visma_job_id,
            **({"problem": problem} if problem else {}),
        },
    )


async def read_body(request: Request[State], limit: int) -> bytes:
    """The raw body, refusing more than `limit` bytes before reading them all."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def client_ip(request: Request[State]) -> str:
    """The sender's address; X-Forwarded-For counts only from a TRUSTED_PROXIES peer."""
    peer = request.client.host if request.client else ""
    if peer in request.state["settings"].TRUSTED_PROXIES:
        forwarded = request.headers.get("x-forwarded-for", "")
        hops = [h.strip() for h in forwarded.split(",") if h.strip()]
        if hops:
            return hops[-1]
    return peer
