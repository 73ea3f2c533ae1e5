"""`POST /webhooks/visma`: verify, store durably (group commit), acknowledge. Nothing more.

The job's outcome is read from Visma afterwards, by the resolver, never inside this request.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from service.domain import job_id_from_headers, read_background_body, time_ordered_uuid
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
    record = delivery_record(header_dict(request), body)
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
    received_at = datetime.now(UTC)
    return DeliveryRecord(
        # Time-ordered, so the inbox grows at the end of its primary key. Uniqueness is all
        # it needs (it is no secret), so Python's own generator serves, without a syscall.
        id=time_ordered_uuid(int(received_at.timestamp() * 1000), random.getrandbits(74)),
        kind="visma",
        notification_id=notification_id,
        event_id=headers.get(signatures.EVENT_ID_HEADER),
        received_at=received_at,
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


def header_dict(request: Request[State]) -> dict[str, str]:
    """The request's headers as a plain dict (names lower-case; a repeated name keeps its first
    value), built in one pass over the raw list."""
    headers: dict[str, str] = {}
    for name, value in request.headers.raw:
        headers.setdefault(name.decode("latin-1"), value.decode("latin-1"))
    return headers


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
