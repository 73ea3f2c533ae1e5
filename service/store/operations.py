"""Bulk operations: the rows, the lease that keeps one to one replica, and the jobs a resend
takes. Functions take a session and never commit."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from service.store.models import Delivery, Job, Operation


async def add_operation(session: AsyncSession, operation: Operation) -> Operation:
    session.add(operation)
    await session.flush()
    return operation


async def get_operation(
    session: AsyncSession, operation_id: str, *, for_update: bool = False
) -> Operation | None:
    if "\x00" in operation_id:
        return None
    query = select(Operation).where(Operation.id == operation_id)
    if for_update:
        query = query.with_for_update().execution_options(populate_existing=True)
    return (await session.execute(query)).scalar_one_or_none()


async def claim_operation(
    session: AsyncSession,
    *,
    owner: str,
    now: datetime,
    lease_until: datetime,
    states: Sequence[str],
    operation_id: str | None = None,
) -> Operation | None:
    """The oldest operation in `states` (or `operation_id`, if it is) whose lease is free
    (never taken, or run out: its replica died), leased to `owner`. SKIP LOCKED: replicas
    claiming at once take different ones, or none."""
    query = (
        select(Operation)
        .where(
            Operation.state.in_(states),
            or_(Operation.lease_until.is_(None), Operation.lease_until < now),
        )
        .where(*([Operation.id == operation_id] if operation_id else []))
        .order_by(Operation.created_at, Operation.id)
        .limit(1)
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    )
    operation = (await session.execute(query)).scalar_one_or_none()
    if operation is not None:
        operation.lease_owner = owner
        operation.lease_until = lease_until
        await session.flush()
    return operation


def _resend_candidates(issue_id: str, *, before: datetime) -> list[ColumnElement[bool]]:
    # The issue's jobs not re-sent yet, from before the resend began (a job it made that fails
    # again joins the issue, and is for the next resend, not this one).
    return [Job.issue_id == issue_id, Job.resent_as.is_(None), Job.submitted_at <= before]


async def count_resend_candidates(session: AsyncSession, issue_id: str, *, before: datetime) -> int:
    query = (
        select(func.count()).select_from(Job).where(*_resend_candidates(issue_id, before=before))
    )
    return int((await session.execute(query)).scalar_one())


async def resend_candidate_ids(
    session: AsyncSession, issue_id: str, *, before: datetime, limit: int
) -> list[str]:
    """Up to `limit` ids of the jobs a resend of the issue would take, oldest first."""
    query = (
        select(Job.id)
        .where(*_resend_candidates(issue_id, before=before))
        .order_by(Job.submitted_at, Job.id)
        .limit(limit)
    )
    return [str(i) for i in (await session.execute(query)).scalars()]


async def lock_resend_candidates(
    session: AsyncSession, issue_id: str, *, before: datetime, limit: int
) -> Sequence[Job]:
    """The next `limit` jobs to re-send, locked (SKIP LOCKED: a job another transaction holds
    is left to it; `resent_as` is looked at again under the lock)."""
    query = (
        select(Job)
        .where(*_resend_candidates(issue_id, before=before))
        .order_by(Job.submitted_at, Job.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    )
    return (await session.execute(query)).scalars().all()


async def count_inbox_between(
    session: AsyncSession, *, kind: str, since: datetime, until: datetime, tenant: str | None
) -> int:
    query = (
        select(func.count())
        .select_from(Delivery)
        .where(*_window(kind=kind, since=since, until=until, tenant=tenant))
    )
    return int((await session.execute(query)).scalar_one())


async def inbox_ids_between(
    session: AsyncSession,
    *,
    kind: str,
    since: datetime,
    until: datetime,
    tenant: str | None,
    after: str | None,
    limit: int,
) -> list[str]:
    """Ids of `kind` deliveries received in [since, until) (for `tenant`, when given), in id
    order after `after`."""
    query = select(Delivery.id).where(*_window(kind=kind, since=since, until=until, tenant=tenant))
    if after is not None:
        query = query.where(Delivery.id > after)
    query = query.order_by(Delivery.id).limit(limit)
    return [str(value) for value in (await session.execute(query)).scalars()]


def _window(
    *, kind: str, since: datetime, until: datetime, tenant: str | None
) -> list[ColumnElement[bool]]:
    conditions = [
        Delivery.kind == kind,
        Delivery.received_at >= since,
        Delivery.received_at < until,
    ]
    if tenant is not None:
        conditions.append(Delivery.tenant_id == tenant)
    return conditions
