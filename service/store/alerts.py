"""Alerts, their outbox of deliveries, attempts and noise windows. Functions take a session
and never commit."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from service.store.forwards import ForwardSource
from service.store.models import Alert, AlertAttempt, AlertDelivery, AlertWindow, Job
from service.store.status import insert_ignore

PENDING = "pending"
"""An alert not yet fanned out, or a delivery not yet sent (and not given up)."""


@dataclass(frozen=True)
class ClaimedDelivery:
    """A delivery this worker holds the lease on, with what it must send."""

    id: int
    alert_id: str | None
    """None for a job's callback, which names its job instead."""
    job_id: str | None
    channel: str
    target: str
    attempts: int
    body: dict[str, Any]
    traceparent: str | None = None
    """A callback's job's trace context: its send joins the job's trace."""
    inbox_delivery_id: str | None = None
    """A forwarded event's inbox delivery (channel `forward`), whose body it sends."""
    source: ForwardSource | None = None
    """That delivery as read when the forward was claimed (None: not read, or purged)."""


async def add_alert(session: AsyncSession, alert: Alert) -> Alert:
    """Insert a new alert (flushed, so it is visible in this transaction)."""
    session.add(alert)
    await session.flush()
    return alert


async def get_alert(
    session: AsyncSession, alert_id: str, *, for_update: bool = False
) -> Alert | None:
    """The alert with this id, locked for update when asked."""
    query = select(Alert).where(Alert.id == alert_id)
    if for_update:
        query = query.with_for_update().execution_options(populate_existing=True)
    return (await session.execute(query)).scalar_one_or_none()


async def lock_window(session: AsyncSession, key: str) -> AlertWindow:
    """The noise window with this key, created empty if new, locked until the transaction ends.

    The lock makes concurrent transitions of one component or fault code take turns, so the
    window's decision sees every earlier one.
    """
    await insert_ignore(session, AlertWindow, [{"key": key, "count": 0, "subjects": []}])
    query = (
        select(AlertWindow)
        .where(AlertWindow.key == key)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return (await session.execute(query)).scalar_one()


async def claim_due_alerts(session: AsyncSession, *, now: datetime, limit: int) -> Sequence[Alert]:
    """Pending alerts whose time has come, locked (SKIP LOCKED: replicas take different ones)."""
    query = (
        select(Alert)
        .where(Alert.state == PENDING, Alert.due_at <= now)
        .order_by(Alert.due_at, Alert.raised_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    )
    return (await session.execute(query)).scalars().all()


async def add_deliveries(
    session: AsyncSession, alert_id: str, targets: Sequence[tuple[str, str]], *, due: datetime
) -> None:
    """One pending delivery of the alert per (channel, target), due at `due`."""
    for channel, target in targets:
        session.add(
            AlertDelivery(
                alert_id=alert_id,
                channel=channel,
                target=target,
                state=PENDING,
                attempts=0,
                next_attempt_at=due,
            )
        )
    await session.flush()


async def claim_due_deliveries(
    session: AsyncSession,
    *,
    now: datetime,
    lease_until: datetime,
    limit: int,
    room: Callable[[str], int] | None = None,
    full: Collection[str] = (),
) -> list[ClaimedDelivery]:
    """Claim up to `limit` deliveries due now; returns what each must send.

    Claiming pushes `next_attempt_at` to `lease_until`: if this process dies mid-send, the
    delivery is due again once the lease runs out. SKIP LOCKED lets replicas claim side by side.
    Targets in `full` are passed over, and at most `room(target)` are taken for each other one:
    a delivery is only claimed when it can be sent at once, so its lease runs while it is sent.
    """
    query = (
        select(AlertDelivery, Alert.body, Job.traceparent)
        .outerjoin(Alert, Alert.id == AlertDelivery.alert_id)
        .outerjoin(Job, Job.id == AlertDelivery.job_id)
        .where(AlertDelivery.state == PENDING, AlertDelivery.next_attempt_at <= now)
        .order_by(AlertDelivery.next_attempt_at, AlertDelivery.id)
        .limit(limit)
        .with_for_update(skip_locked=True, of=AlertDelivery)
    )
    if full:
        query = query.where(AlertDelivery.target.not_in(list(full)))
    rows = (await session.execute(query)).all()
    if room is not None:
        rows = _within_room(rows, room)
    claimed = [
        ClaimedDelivery(
            id=delivery.id,
            alert_id=delivery.alert_id,
            job_id=delivery.job_id,
            channel=delivery.channel,
            target=delivery.target,
            attempts=delivery.attempts,
            # A callback carries its own body (the job when it ended); an alert's is shared.
            body=delivery.body if delivery.body is not None else body,
            traceparent=traceparent,
            inbox_delivery_id=delivery.inbox_delivery_id,
        )
        for delivery, body, traceparent in rows
    ]
    if claimed:
        await session.execute(
            update(AlertDelivery)
            .where(AlertDelivery.id.in_([c.id for c in claimed]))
            .values(next_attempt_at=lease_until)
        )
    return claimed


def _within_room(rows: Sequence[Any], room: Callable[[str], int]) -> list[Any]:
    """The rows each target has room for, in order; the rest stay due (unleased) for later."""
    left: dict[str, int] = {}
    kept = []
    for row in rows:
        target = row[0].target
        if target not in left:
            left[target] = room(target)
        if left[target] > 0:
            left[target] -= 1
            kept.append(row)
    return kept


async def get_delivery(
    session: AsyncSession, delivery_id: int, *, for_update: bool = False
) -> AlertDelivery | None:
    """The delivery with this id, locked for update when asked."""
    query = select(AlertDelivery).where(AlertDelivery.id == delivery_id)
    if for_update:
        query = query.with_for_update().execution_options(populate_existing=True)
    return (await session.execute(query)).scalar_one_or_none()


async def add_attempt(
    session: AsyncSession,
    delivery_id: int,
    *,
    at: datetime,
    status_code: int | None,
    error: str | None,
    answer: str | None,
) -> None:
    """Keep one attempt and the target's answer."""
    session.add(
        AlertAttempt(
            delivery_id=delivery_id, at=at, status_code=status_code, error=error, answer=answer
        )
    )


async def next_alert_due_at(session: AsyncSession) -> datetime | None:
    """When the next pending alert or delivery falls due, if any is waiting."""
    alert = select(func.min(Alert.due_at)).where(Alert.state == PENDING)
    delivery = select(func.min(AlertDelivery.next_attempt_at)).where(AlertDelivery.state == PENDING)
    times = [
        (await session.execute(alert)).scalar_one_or_none(),
        (await session.execute(delivery)).scalar_one_or_none(),
    ]
    known = [t for t in times if t is not None]
    return min(known) if known else None


async def list_alerts(
    session: AsyncSession, *, kinds: Sequence[str] = (), limit: int, offset: int
) -> tuple[Sequence[Alert], int]:
    """One page of alerts, newest first, and the total count."""
    conditions: list[ColumnElement[bool]] = []
    if kinds:
        conditions.append(Alert.kind.in_(kinds))
    count_query = select(func.count()).select_from(Alert)
    page_query = select(Alert).order_by(Alert.raised_at.desc(), Alert.at.desc(), Alert.id)
    if conditions:
        count_query = count_query.where(and_(*conditions))
        page_query = page_query.where(and_(*conditions))
    total = (await session.execute(count_query)).scalar_one()
    rows = (await session.execute(page_query.limit(limit).offset(offset))).scalars().all()
    return rows, total


async def alert_deliveries(
    session: AsyncSession, alert_ids: Sequence[str]
) -> dict[str, list[AlertDelivery]]:
    """Each alert's deliveries, in the order they were created."""
    found: dict[str, list[AlertDelivery]] = defaultdict(list)
    if not alert_ids:
        return found
    query = (
        select(AlertDelivery)
        .where(AlertDelivery.alert_id.in_(alert_ids))
        .order_by(AlertDelivery.id)
    )
    for delivery in (await session.execute(query)).scalars():
        if delivery.alert_id is not None:  # always: the query asked for these alerts
            found[delivery.alert_id].append(delivery)
    return found


async def delivery_attempts(
    session: AsyncSession, delivery_ids: Sequence[int]
) -> dict[int, list[AlertAttempt]]:
    """Each delivery's attempts, oldest first."""
    found: dict[int, list[AlertAttempt]] = defaultdict(list)
    if not delivery_ids:
        return found
    query = (
        select(AlertAttempt)
        .where(AlertAttempt.delivery_id.in_(delivery_ids))
        .order_by(AlertAttempt.at, AlertAttempt.id)
    )
    for attempt in (await session.execute(query)).scalars():
        found[attempt.delivery_id].append(attempt)
    return found


async def get_window(session: AsyncSession, key: str) -> AlertWindow | None:
    """The noise window with this key, read without a lock (None: never used)."""
    return (
        await session.execute(select(AlertWindow).where(AlertWindow.key == key))
    ).scalar_one_or_none()
