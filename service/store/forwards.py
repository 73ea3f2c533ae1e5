"""Forwarded Visma events: the outbox rows (`alert_deliveries`, channel `forward`) the ingest
writer queued with their inbox deliveries, read back for sending and showing. Functions take a
session and never commit."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from service.store.ingest_rows import FORWARD
from service.store.models import AlertAttempt, AlertDelivery, Delivery


@dataclass(frozen=True)
class ForwardSource:
    """What a forward sends of its inbox delivery: the body as it came, and what it names."""

    delivery_id: str
    body: bytes
    content_type: str | None
    event_id: str | None
    tenant_id: str | None
    notification_id: str | None


async def forward_sources(
    session: AsyncSession, delivery_ids: Sequence[str]
) -> dict[str, ForwardSource]:
    """The inbox deliveries these forwards send, by id (a purged one is missing)."""
    if not delivery_ids:
        return {}
    query = select(
        Delivery.id,
        Delivery.body,
        Delivery.headers,
        Delivery.event_id,
        Delivery.tenant_id,
        Delivery.notification_id,
    ).where(Delivery.id.in_(sorted(set(delivery_ids))))
    found: dict[str, ForwardSource] = {}
    for row in (await session.execute(query)).all():
        headers = {str(k).lower(): v for k, v in (row.headers or {}).items()}
        content_type = headers.get("content-type")
        found[row.id] = ForwardSource(
            delivery_id=row.id,
            body=row.body,
            content_type=content_type if isinstance(content_type, str) else None,
            event_id=row.event_id,
            tenant_id=row.tenant_id,
            notification_id=row.notification_id,
        )
    return found


async def delivery_forwards(
    session: AsyncSession, delivery_ids: Sequence[str]
) -> dict[str, list[AlertDelivery]]:
    """Each inbox delivery's forwards, one per target, in the order they were queued."""
    found: dict[str, list[AlertDelivery]] = defaultdict(list)
    if not delivery_ids:
        return found
    query = (
        select(AlertDelivery)
        .where(AlertDelivery.inbox_delivery_id.in_(list(delivery_ids)))
        .order_by(AlertDelivery.id)
    )
    for forward in (await session.execute(query)).scalars():
        if forward.inbox_delivery_id is not None:  # always: the query asked for these
            found[forward.inbox_delivery_id].append(forward)
    return found


async def failing_since(session: AsyncSession, target: str) -> datetime | None:
    """When the target's current run of failed forward attempts began (None: its last attempt
    succeeded, or none was made)."""
    attempts = (
        select(AlertAttempt.at, AlertAttempt.status_code)
        .join(AlertDelivery, AlertDelivery.id == AlertAttempt.delivery_id)
        .where(AlertDelivery.channel == FORWARD, AlertDelivery.target == target)
    )
    succeeded = attempts.where(AlertAttempt.status_code.between(200, 299)).subquery()
    last_success = (await session.execute(select(func.max(succeeded.c.at)))).scalar_one_or_none()
    failed = attempts.where(
        AlertAttempt.status_code.is_(None) | ~AlertAttempt.status_code.between(200, 299)
    )
    if last_success is not None:
        failed = failed.where(AlertAttempt.at > last_success)
    failed_sub = failed.subquery()
    first: datetime | None = (
        await session.execute(select(func.min(failed_sub.c.at)))
    ).scalar_one_or_none()
    return first
