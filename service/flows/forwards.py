"""Forwarded Visma events: what a forward sends, and the diagnostic when a target keeps failing.

The ingest writer queues a forward (an outbox row, channel `forward`) for each target of each
new delivery whose event is routed, in the delivery's own commit. The sender
(`workers.AlertSender`) claims it like any outbox row; this module gives it the request: the
inbox body verbatim with its content type, the `visma-*` headers that name the event, and
Standard Webhooks headers (`webhook-id` is the same for a delivery and target on every retry,
so the receiver can drop repeats). The target is checked again at each send on the addresses
it resolves to (`check_callback`, with EVENT_ALLOWED_HOSTS), and connected to at the address
checked.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from service import store
from service.domain import (
    AlertKind,
    InvalidInput,
    forward_failing,
    forward_failing_summary,
    redact_url,
)
from service.flows.alerts import raise_diagnostic_alert
from service.flows.callbacks import CallbackTarget, check_callback

FORWARD = store.FORWARD
EVENT_ID_OUT = "visma-event-id"
TENANT_ID_OUT = "visma-tenant-id"
NOTIFICATION_ID_OUT = "visma-notification-id"
DEFAULT_CONTENT_TYPE = "application/json"
GONE_FROM_INBOX = "not sent: the delivery is no longer in the inbox (retention removed it)"
FAILING_KEY = "events.forward_failing:"


@dataclass(frozen=True)
class ForwardRequest:
    """One forward, ready to post: where to connect, the bytes and the headers."""

    target: CallbackTarget
    content: bytes
    headers: dict[str, str]


async def with_sources(
    session: AsyncSession, claimed: Sequence[store.ClaimedDelivery]
) -> list[store.ClaimedDelivery]:
    """The claimed rows, each forward with its inbox delivery (read in the claim's transaction,
    so sending needs no transaction of its own)."""
    wanted = [c.inbox_delivery_id for c in claimed if c.inbox_delivery_id is not None]
    if not wanted:
        return list(claimed)
    sources = await store.forward_sources(session, wanted)
    return [
        dataclasses.replace(c, source=sources.get(c.inbox_delivery_id))
        if c.inbox_delivery_id is not None
        else c
        for c in claimed
    ]


def message_id(inbox_delivery_id: str, target: str) -> str:
    """The forward's `webhook-id`: the same for a delivery and target on every attempt."""
    digest = hashlib.sha256(f"{inbox_delivery_id}\n{target}".encode()).hexdigest()[:24]
    return f"evt_{inbox_delivery_id}_{digest}"


def signing_key(secret: str) -> bytes:
    """The key of a Standard Webhooks secret (`whsec_` + base64; settings checked its form)."""
    return base64.b64decode(secret.removeprefix("whsec_"))


def signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """Standard Webhooks' `v1` signature over the body's bytes as they are (the package's
    `sign` takes text, and a body is forwarded byte for byte)."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


async def check_forward_target(url: str, *, allowed_hosts: Collection[str]) -> CallbackTarget:
    """Where to connect for `url`, checked as a callback target is; InvalidInput says why not."""
    try:
        return await check_callback(url, allowed_hosts=allowed_hosts)
    except InvalidInput as exc:
        detail = exc.detail.replace("CALLBACK_ALLOWED_HOSTS", "EVENT_ALLOWED_HOSTS")
        raise InvalidInput(detail.replace("callbackUrl", "the event target")) from None


def forward_request(
    source: store.ForwardSource,
    *,
    target: CallbackTarget,
    target_url: str,
    key: bytes,
    now: datetime,
) -> ForwardRequest:
    """The request that forwards `source` to `target`, signed with `key` at `now`."""
    msg_id = message_id(source.delivery_id, target_url)
    timestamp = int(now.timestamp())
    headers = {
        "Content-Type": source.content_type or DEFAULT_CONTENT_TYPE,
        "Host": target.host_header,
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(key, msg_id, timestamp, source.body),
    }
    for name, value in (
        (EVENT_ID_OUT, source.event_id),
        (TENANT_ID_OUT, source.tenant_id),
        (NOTIFICATION_ID_OUT, source.notification_id),
    ):
        if value is not None:
            headers[name] = value
    return ForwardRequest(target=target, content=source.body, headers=headers)


async def check_failing_target(
    session: AsyncSession, target: str, *, now: datetime, minutes: float
) -> None:
    """After a failed forward attempt: raise `events.forward_failing` once the target has failed
    every attempt for `minutes` (once per run of failures; a success ends the run)."""
    if minutes <= 0:
        return
    started = await store.failing_since(session, target)
    if started is None:
        return
    key = FAILING_KEY + hashlib.sha256(target.encode()).hexdigest()[:32]
    window = await store.lock_window(session, key)
    told = window.until
    if not forward_failing(started, now=now, minutes=minutes, told=told):
        return
    window.until = started
    shown = redact_url(target)
    await raise_diagnostic_alert(
        session,
        kind=AlertKind.EVENTS_FORWARD_FAILING,
        subject=f"target:{shown}",
        summary=forward_failing_summary(shown, minutes=minutes),
        at=now,
        subject_json={
            "target": shown,
            "failingSince": started.isoformat(),
            "minutes": minutes,
        },
    )
