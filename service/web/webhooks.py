"""`POST /webhooks/visma`: verify, store durably (group commit), acknowledge. Nothing more.

The job's outcome is read from Visma afterwards, by the resolver, never inside this request.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from json.encoder import encode_basestring
from time import perf_counter
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.types import Receive, Scope, Send

from service import metrics
from service.domain import (
    BACKGROUND_EVENT,
    JOB_ID_KEY,
    PROBLEM_NO_NOTIFICATION_ID,
    job_id_from_headers,
    read_background_body,
    time_ordered_uuid,
)
from service.store import DeliveryRecord, IngestUnavailable
from service.visma import (
    EVENT_ID_HEADER,
    NOTIFICATION_ID_HEADER,
    SIGNATURE_HEADER,
    TENANT_ID_HEADER,
    verify,
)
from service.web.errors import error_response
from service.web.sources import Address, Network, client_address, in_networks

NO_SECRETS = "VISMA_WEBHOOK_SECRETS is not set: every delivery is refused"
BAD_SIGNATURE = f"missing or invalid {SIGNATURE_HEADER} signature"
NOT_STORED = "the delivery could not be stored; retry later"
SOURCE_NOT_ALLOWED = "this source address is not in ALLOWED_SOURCE_IPS"
_SIGNATURE_HEADER = SIGNATURE_HEADER.encode("latin-1")
_RETRY_LATER = {"Retry-After": "5"}
_observe_handling = metrics.WEBHOOK_TIMER.observe


class BodyTooLarge(Exception):
    pass


class VismaWebhook:
    """The endpoint, as a plain ASGI app: the hot path of every delivery.

    It reads what it needs straight from the ASGI scope and `receive`, builds only the inbox
    row, and sends its answer as ready-made bytes, instead of a Starlette `Request`, a `Headers`
    object and a `JSONResponse` per request: that machinery cost more CPU than everything else
    in the request apart from the database. What it answers is unchanged: the same status
    codes, the same JSON bodies and headers (errors still go through `error_response`).
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = perf_counter()
        state = scope["state"]
        settings = state["settings"]
        raw_headers: list[tuple[bytes, bytes]] = scope["headers"]
        headers = _header_dict(raw_headers)
        allowed = settings.ALLOWED_SOURCE_IPS
        if allowed and not in_networks(
            _client_ip(scope, headers, settings.TRUSTED_PROXIES), allowed
        ):
            metrics.DELIVERY_FORBIDDEN.inc()
            await error_response(403, "forbidden", SOURCE_NOT_ALLOWED)(scope, receive, send)
            return
        limit = settings.MAX_BODY_BYTES
        try:
            body = await _receive_body(receive, _first(raw_headers, b"content-length"), limit)
        except BodyTooLarge:
            metrics.DELIVERY_TOO_LARGE.inc()
            too_large = f"body is larger than MAX_BODY_BYTES={limit}"
            await error_response(413, "too_large", too_large)(scope, receive, send)
            return
        except ClientDisconnect:
            return  # nobody is left to answer
        secrets = settings.webhook_secrets()
        if not secrets:
            metrics.DELIVERY_BAD_SIGNATURE.inc()
            await error_response(401, "unauthorized", NO_SECRETS)(scope, receive, send)
            return
        signature = _first(raw_headers, _SIGNATURE_HEADER)
        if not verify(body, signature, secrets):
            metrics.DELIVERY_BAD_SIGNATURE.inc()
            watch = state.get("signature_watch")  # absent where no service runs it
            if watch is not None:
                watch.failed()
            await error_response(401, "unauthorized", BAD_SIGNATURE)(scope, receive, send)
            return
        record = delivery_record(headers, body)
        try:
            stored, linked = await state["ingest"].store_linking(record)
        except IngestUnavailable:
            metrics.DELIVERY_UNAVAILABLE.inc()
            unavailable = error_response(503, "unavailable", NOT_STORED, headers=_RETRY_LATER)
            await unavailable(scope, receive, send)
            return
        if stored:
            answer = b"".join(
                (
                    b'{"status":"stored","deliveryId":"',
                    record.id.encode(),
                    b'","matchedJob":',
                    # Named only when linked: a claim the link rules refused matched nothing.
                    _json_text(record.claimed_job_id if linked else None),
                    b"}",
                )
            )
        else:
            answer = b"".join(
                (
                    b'{"status":"duplicate","notificationId":',
                    _json_text(record.notification_id),
                    b"}",
                )
            )
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-length", str(len(answer)).encode()),
                    (b"content-type", b"application/json"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": answer})
        _observe_handling(perf_counter() - started)


receive_visma_webhook = VismaWebhook()


def delivery_record(headers: dict[str, str], body: bytes) -> DeliveryRecord:
    """A verified delivery as an inbox row; an unusable body is kept with its problem named.

    Only a background answer's body is read (an entity event's has no schema: it is kept and
    forwarded as it came)."""
    event_id = headers.get(EVENT_ID_HEADER)
    if event_id is None or event_id == BACKGROUND_EVENT:
        notice, problem = read_background_body(body)
    else:
        notice, problem = None, None
    notification_id = headers.get(NOTIFICATION_ID_HEADER) or None
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
        event_id=event_id,
        received_at=received_at,
        headers=headers,
        body=body,
        verified=True,
        claimed_job_id=_job_id(headers),
        visma_job_id=visma_job_id,
        problem=problem,
        tenant_id=headers.get(TENANT_ID_HEADER) or None,
    )


def _job_id(headers: dict[str, str]) -> str | None:
    # ASGI servers send header names in lower case, so a lookup finds it; the scan (names of
    # any case) is only for a delivery without the header, or a server that keeps the case.
    value = headers.get(JOB_ID_KEY)
    if value is not None:
        return value.strip() or None
    return job_id_from_headers(headers)


def _header_dict(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """The headers as a plain dict, in their order; a repeated name keeps its first value."""
    headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in raw}
    if len(headers) != len(raw):  # a name repeats: the comprehension kept its last value
        headers = {}
        for name, value in raw:
            headers.setdefault(name.decode("latin-1"), value.decode("latin-1"))
    return headers


def _first(raw: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    """The first value of header `name` (lower case), as Starlette's `Headers.get` finds it."""
    for key, value in raw:
        if key == name:
            return value.decode("latin-1")
    return None


def _json_text(value: str | None) -> bytes:
    """`value` as JSON, as `JSONResponse` writes it (UTF-8, not ASCII-escaped)."""
    return b"null" if value is None else encode_basestring(value).encode("utf-8")


async def _receive_body(receive: Receive, declared: str | None, limit: int) -> bytes:
    """The raw body from the ASGI messages, refusing more than `limit` bytes."""
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.request":
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge
            if not message.get("more_body", False):
                if not chunks:
                    return chunk
                chunks.append(chunk)
                return b"".join(chunks)
            chunks.append(chunk)
        elif message["type"] == "http.disconnect":
            raise ClientDisconnect


def _client_ip(
    scope: Scope, headers: dict[str, str], trusted_proxies: list[Network]
) -> Address | None:
    """The sender's address; X-Forwarded-For counts only from a TRUSTED_PROXIES peer."""
    client = scope.get("client")
    return client_address(
        client[0] if client else None, headers.get("x-forwarded-for"), trusted_proxies
    )


async def read_body(request: Request[Any], limit: int) -> bytes:
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
