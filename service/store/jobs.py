"""Job and timeline queries. Functions take a session and never commit."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, delete, func, insert, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from service.store.job_changes import mark_changed
from service.store.models import Delivery, Job, JobCallback, JobEvent, JobStateCount

_OPERATORS = {
    ">": lambda col, at: col > at,
    "<": lambda col, at: col < at,
    ">=": lambda col, at: col >= at,
    "<=": lambda col, at: col <= at,
}


async def add_job(session: AsyncSession, job: Job) -> Job:
    """Insert a new job (flushed, so it is visible in this transaction)."""
    session.add(job)
    await session.flush()
    return job


async def add_jobs_to_send(
    session: AsyncSession,
    jobs: Sequence[Mapping[str, Any]],
    events: Sequence[Mapping[str, Any]],
    callbacks: Sequence[Mapping[str, Any]],
) -> None:
    """Many new jobs at once (a batch, a bulk resend) as a few bulk statements: the jobs, their
    timeline entries, their callbacks."""
    if jobs:
        await session.execute(insert(Job), list(jobs))
    if events:
        await session.execute(insert(JobEvent), list(events))
    if callbacks:
        await session.execute(insert(JobCallback), list(callbacks))


async def get_job(session: AsyncSession, job_id: str, *, for_update: bool = False) -> Job | None:
    """The job with this id, locked for update when asked (PostgreSQL; SQLite locks the file)."""
    if "\x00" in job_id:
        return None  # no row holds a NUL (PostgreSQL text cannot), and asyncpg refuses one
    query = select(Job).where(Job.id == job_id)
    if for_update:
        query = query.with_for_update()
    return (await session.execute(query)).scalar_one_or_none()


async def get_jobs(session: AsyncSession, job_ids: Sequence[str]) -> list[Job]:
    """The jobs with these ids (those that exist), in no particular order."""
    found: list[Job] = []
    for start in range(0, len(job_ids), 1000):  # SQLite binds a bounded number of parameters
        chunk = [job_id for job_id in job_ids[start : start + 1000] if "\x00" not in job_id]
        found += (await session.execute(select(Job).where(Job.id.in_(chunk)))).scalars()
    return found


async def job_ids_starting_with(session: AsyncSession, prefix: str, *, limit: int) -> list[str]:
    """Up to `limit` ids of jobs that start with `prefix`, in order (the CLI's short ids).

    A scan of the ids, where PostgreSQL's collation keeps LIKE off the index: it serves a
    person at a terminal, once per command, after the whole id was not found.
    """
    if "\x00" in prefix:
        return []
    query = (
        select(Job.id)
        .where(Job.id.startswith(prefix, autoescape=True))
        .order_by(Job.id)
        .limit(limit)
    )
    return list((await session.execute(query)).scalars())


async def add_event(
    session: AsyncSession,
    job_id: str,
    *,
    kind: str,
    source: str,
    at: datetime,
    detail: Mapping[str, Any] | None = None,
) -> None:
    """Append one entry to a job's timeline (its waiters wake when the transaction commits)."""
    mark_changed(session, job_id)
    session.add(JobEvent(job_id=job_id, kind=kind, source=source, at=at, detail=dict(detail or {})))


@dataclass(frozen=True)
class TimelineEntry:
    """One entry of a job's timeline, from `job_events` or from the inbox."""

    at: datetime
    kind: str
    source: str
    detail: dict[str, Any]


async def job_events(session: AsyncSession, job_id: str) -> list[TimelineEntry]:
    """A job's timeline, oldest first: its events, and each webhook delivery it matched.

    A webhook is not copied into `job_events`: its inbox row (`deliveries.job_id`) is the
    record, so the hot path writes one row per delivery, not two. Entries at the same instant
    (to the microsecond) keep a fixed order: the job's own events first, in the order they were
    written, then deliveries in the order of their (time-ordered) ids.
    """
    events = await session.execute(
        select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.at, JobEvent.id)
    )
    deliveries = await session.execute(
        select(
            Delivery.id,
            Delivery.received_at,
            Delivery.notification_id,
            Delivery.visma_job_id,
            Delivery.problem,
        )
        .where(Delivery.job_id == job_id)
        .order_by(Delivery.received_at, Delivery.id)
    )
    entries = [
        TimelineEntry(e.at, e.kind, e.source, dict(e.detail or {})) for e in events.scalars()
    ]
    entries += [
        TimelineEntry(at, "webhook", "webhook", webhook_detail(delivery, notification, visma, why))
        for delivery, at, notification, visma, why in deliveries
    ]
    entries.sort(key=lambda entry: entry.at)  # stable: each source keeps its own order
    return entries


def webhook_detail(
    delivery_id: str, notification_id: str | None, visma_job_id: str | None, problem: str | None
) -> dict[str, Any]:
    """The `detail` of a job's `webhook` timeline entry, from its delivery."""
    detail: dict[str, Any] = {
        "deliveryId": delivery_id,
        "notificationId": notification_id,
        "vismaJobId": visma_job_id,
    }
    if problem:
        detail["problem"] = problem
    return detail


async def list_jobs(
    session: AsyncSession,
    *,
    states: Sequence[str] = (),
    visma_job_id: str | None = None,
    tags: Mapping[str, str] | None = None,
    last_modified: tuple[str, datetime] | None = None,
    created: tuple[str, datetime] | None = None,
    tenants: Sequence[str] = (),
    default_tenant: str | None = None,
    issue_id: str | None = None,
    limit: int,
    offset: int,
) -> tuple[Sequence[Job], int]:
    """One page of jobs matching every filter, newest first, and the total count.

    `tenants` filters by company; a job stored before jobs named one (NULL) is the
    `default_tenant`'s."""
    conditions: list[ColumnElement[bool]] = []
    if states:
        conditions.append(Job.state.in_(states))
    if tenants:
        by_tenant: ColumnElement[bool] = Job.tenant.in_(tenants)
        if default_tenant is not None and default_tenant in tenants:
            by_tenant = or_(by_tenant, Job.tenant.is_(None))
        conditions.append(by_tenant)
    if visma_job_id:
        conditions.append(Job.visma_job_id == visma_job_id)
    if issue_id:
        conditions.append(Job.issue_id == issue_id)
    for key, value in (tags or {}).items():
        conditions.append(Job.tags[key].as_string() == value)
    if last_modified:
        op, at = last_modified
        conditions.append(_OPERATORS[op](Job.last_modified_at, at))
    if created:
        op, at = created
        conditions.append(_OPERATORS[op](Job.submitted_at, at))
    page_query = select(Job).where(*conditions).order_by(Job.submitted_at.desc(), Job.id.desc())
    if len(conditions) == (1 if states else 0):
        # By state alone, or no filter: the kept counts, not a count of (up to) every job.
        total = await count_jobs_in(session, states)
    else:
        count_query = select(func.count()).select_from(Job).where(*conditions)
        total = (await session.execute(count_query)).scalar_one()
    rows = (await session.execute(page_query.limit(limit).offset(offset))).scalars().all()
    return rows, total


async def count_jobs_in(session: AsyncSession, states: Sequence[str] = ()) -> int:
    """How many jobs are in any of `states` (all jobs when empty), from `job_state_counts`."""
    query = select(func.coalesce(func.sum(JobStateCount.delta), 0))
    if states:
        query = query.where(JobStateCount.state.in_(states))
    return int((await session.execute(query)).scalar_one())


async def compact_job_counts(session: AsyncSession) -> int:
    """Fold `job_state_counts` into one row per state; how many rows it held before.

    On PostgreSQL one statement deletes the rows its snapshot sees and inserts their sums, so
    rows that other transactions add meanwhile stay as they are. On SQLite the transaction
    holds the write lock, so nothing is added between the steps.
    """
    if session.get_bind().dialect.name == "postgresql":
        result = await session.execute(text(_COMPACT_POSTGRES))
        return int(result.scalar_one())
    rows = (
        await session.execute(
            select(JobStateCount.state, func.sum(JobStateCount.delta), func.count()).group_by(
                JobStateCount.state
            )
        )
    ).all()
    await session.execute(delete(JobStateCount))
    sums = [{"state": state, "delta": total} for state, total, _ in rows if total]
    if sums:
        await session.execute(insert(JobStateCount), sums)
    return sum(count for _, _, count in rows)


_COMPACT_POSTGRES = """
WITH gone AS (DELETE FROM job_state_counts RETURNING state, delta),
folded AS (
    INSERT INTO job_state_counts (state, delta)
    SELECT state, sum(delta) FROM gone GROUP BY state HAVING sum(delta) <> 0
)
SELECT count(*) FROM gone
"""


@dataclass(frozen=True)
class ClaimedJob:
    """What a worker needs to read a claimed job's state without holding a transaction."""

    id: str
    visma_job_id: str | None
    submitted_at: datetime
    claimed_at: datetime
    tenant: str | None = None
    """The job's company; None for a job stored before jobs named one (the default's)."""
    send_pending: bool = False
    """Its request has not been sent yet (it waited for its company's rate budget)."""
    traceparent: str | None = None
    """The trace context of its submission: the read joins that trace."""


async def claim_due_jobs(
    session: AsyncSession,
    *,
    now: datetime,
    lease_until: datetime,
    limit: int,
) -> list[ClaimedJob]:
    """Claim up to `limit` jobs whose state read is due.

    Claiming pushes `next_check_at` to `lease_until`: if this process dies, the job is due again
    once the lease runs out. SKIP LOCKED lets replicas claim side by side without waiting.

    Only open jobs have a `next_check_at` (`flows.record_outcome` clears it when a job
    finishes), so the query names no state: with `state IN (...)` beside it, PostgreSQL took the
    two conditions for independent, expected a handful of rows, and read and sorted every due
    job instead of the first `limit` of `ix_jobs_due` in order (docs/benchmarks.md).
    """
    due = (
        select(Job.id)
        .where(Job.next_check_at <= now)
        .order_by(Job.next_check_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    # One statement: claim and lease together, one round trip (not a select, then an update
    # of what it found).
    claim = (
        update(Job)
        .where(Job.id.in_(due.scalar_subquery()))
        .values(next_check_at=lease_until, check_attempts=Job.check_attempts + 1)
        .returning(
            Job.id,
            Job.visma_job_id,
            Job.submitted_at,
            Job.tenant,
            Job.send_pending,
            Job.traceparent,
        )
        .execution_options(synchronize_session=False)
    )
    return [
        ClaimedJob(
            row.id,
            row.visma_job_id,
            row.submitted_at,
            now,
            tenant=row.tenant,
            send_pending=row.send_pending,
            traceparent=row.traceparent,
        )
        for row in await session.execute(claim)
    ]


async def job_holding(session: AsyncSession, visma_job_id: str) -> str | None:
    """The id of the job that holds this Visma job id, if one does."""
    query = select(Job.id).where(Job.visma_job_id == visma_job_id)
    return (await session.execute(query)).scalar_one_or_none()


async def last_event(session: AsyncSession, job_id: str, kind: str) -> JobEvent | None:
    """The newest timeline event of this kind that the job has, if any."""
    query = (
        select(JobEvent)
        .where(JobEvent.job_id == job_id, JobEvent.kind == kind)
        .order_by(JobEvent.at.desc(), JobEvent.id.desc())
        .limit(1)
    )
    return (await session.execute(query)).scalar_one_or_none()


async def recent_resolvers(
    session: AsyncSession, *, tenant: str | None, default_tenant: str | None, limit: int
) -> list[str | None]:
    """How a company's newest finished jobs that asked for a webhook were resolved (`webhook`,
    `poll`), newest first. A job with no company (stored before jobs named one) counts as the
    `default_tenant`'s."""
    query = (
        select(Job.resolved_by)
        .where(Job.finished_at.is_not(None), Job.resolved_by.is_not(None), Job.notify.is_(True))
        .order_by(Job.finished_at.desc())
        .limit(limit)
    )
    if tenant is not None:
        mine = Job.tenant == tenant
        query = query.where(or_(mine, Job.tenant.is_(None)) if tenant == default_tenant else mine)
    return list((await session.execute(query)).scalars().all())
