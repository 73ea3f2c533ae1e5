"""Inbox queries. Functions take a session and never commit."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, and_, func, insert, not_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from service.store.ingest_rows import DeliveryRecord
from service.store.models import Delivery


async def list_deliveries(
    session: AsyncSession,
    *,
    notification_id: str | None = None,
    matched: bool | None = None,
    kind: str | None = None,
    event: str | None = None,
    has_problem: bool | None = None,
    limit: int,
    offset: int,
) -> tuple[Sequence[Delivery], int]:
    """One page of the inbox, newest first, and the total count."""
    conditions: list[ColumnElement[bool]] = []
    if notification_id:
        conditions.append(Delivery.notification_id == notification_id)
    if matched is not None:
        conditions.append(Delivery.job_id.is_not(None) if matched else Delivery.job_id.is_(None))
    if kind:
        conditions.append(Delivery.kind == kind)
    if event:
        conditions.append(Delivery.event_id == event)
    if has_problem is not None:
        # The column the API shows as `problem`: the dashboard's split is the API's notion.
        named = Delivery.problem.is_not(None)
        conditions.append(named if has_problem else not_(named))
    count_query = select(func.count()).select_from(Delivery)
    page_query = select(Delivery).order_by(Delivery.received_at.desc(), Delivery.id.desc())
    if conditions:
        count_query = count_query.where(and_(*conditions))
        page_query = page_query.where(and_(*conditions))
    total = (await session.execute(count_query)).scalar_one()
    rows = (await session.execute(page_query.limit(limit).offset(offset))).scalars().all()
    return rows, total


async def count_deliveries(session: AsyncSession) -> int:
    """How many deliveries the inbox holds."""
    return (await session.execute(select(func.count()).select_from(Delivery))).scalar_one()


async def add_delivery(session: AsyncSession, delivery: DeliveryRecord) -> None:
    """Insert one delivery in the caller's transaction (the status page's: it is linked to no
    job; Visma's deliveries go through the ingest writer), with the columns ingest writes."""
    await session.execute(insert(Delivery).values(delivery.values()))


async def linked_visma_ids(session: AsyncSession, job_id: str, *, limit: int) -> list[str]:
    """The Visma job ids named by the deliveries linked to a job, oldest delivery first."""
    query = (
        select(Delivery.visma_job_id)
        .where(Delivery.job_id == job_id, Delivery.visma_job_id.is_not(None))
        .group_by(Delivery.visma_job_id)
        .order_by(func.min(Delivery.received_at))
        .limit(limit)
    )
    return [str(value) for value in (await session.execute(query)).scalars()]


async def unlink_deliveries(
    session: AsyncSession, *, job_id: str, visma_job_id: str, problem: str
) -> None:
    """Unlink from a job the deliveries that named `visma_job_id`, naming their problem."""
    await session.execute(
        update(Delivery)
        .where(Delivery.job_id == job_id, Delivery.visma_job_id == visma_job_id)
        .values(job_id=None, problem=problem)
    )


async def get_inbox_delivery(
    session: AsyncSession, delivery_id: str, *, for_update: bool = False
) -> Delivery | None:
    """One stored webhook delivery, locked for update when asked."""
    if "\x00" in delivery_id:
        return None  # no row holds a NUL (PostgreSQL text cannot)
    query = select(Delivery).where(Delivery.id == delivery_id)
    if for_update:
        query = query.with_for_update()
    return (await session.execute(query)).scalar_one_or_none()


async def inbox_ids_since(
    session: AsyncSession, since: datetime, *, kind: str, after: str | None, limit: int
) -> list[str]:
    """Ids of `kind` deliveries received at or after `since`, in id order after `after`."""
    query = select(Delivery.id).where(Delivery.kind == kind, Delivery.received_at >= since)
    if after is not None:
        query = query.where(Delivery.id > after)
    query = query.order_by(Delivery.id).limit(limit)
    return [str(value) for value in (await session.execute(query)).scalars()]
