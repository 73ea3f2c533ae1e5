"""Removing what retention says is old, one small batch per call, and how big each table is.

Each `purge_*` takes one batch (at most `limit` rows) of what is old enough, oldest first, and
removes it in the caller's transaction; with `dry_run` it only counts what would go. On
PostgreSQL the batch is claimed with SKIP LOCKED, so replicas purging at once take different
rows and never wait on each other (or on the rows a request is writing). Functions take a
session and never commit; one exception: on SQLite a batch of the inbox is a transaction of its
own, run in one call to the driver, so the webhook writer waits on it for as short as can be.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Delete, Insert, Select, delete, exists, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from service.store.models import (
    Alert,
    AlertDelivery,
    AlertWindow,
    Base,
    DashboardSession,
    Delivery,
    IdempotencyKey,
    Job,
    Operation,
    PurgedNotification,
    StatusComponentUpdate,
    StatusIncident,
)

PENDING = "pending"


async def purge_deliveries(
    session: AsyncSession,
    *,
    before: datetime,
    dedupe_since: datetime,
    open_states: Sequence[str],
    limit: int,
    dry_run: bool = False,
) -> int:
    """Deliveries received before `before`, but none of a job still open; the notification id
    of one received since `dedupe_since` is kept, so its repeat is still refused.

    The inbox is the table a purge has most of, so its batch never passes through Python: the
    statements pick the rows, keep their ids and delete them in the database."""
    open_job = exists().where(Job.id == Delivery.job_id, Job.state.in_(open_states))
    old = select(Delivery.id).where(Delivery.received_at < before, ~open_job)
    if dry_run:
        return await _count(session, old)
    batch = old.order_by(Delivery.received_at).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        # One statement: claim (SKIP LOCKED), delete, keep the ids the dedupe window needs.
        doomed = batch.with_for_update(skip_locked=True, of=Delivery).cte("doomed")
        gone = (
            delete(Delivery)
            .where(Delivery.id == doomed.c.id)
            .returning(Delivery.notification_id, Delivery.received_at)
            .cte("gone")
        )
        kept = insert(PurgedNotification).from_select(
            ["notification_id", "received_at"],
            select(gone.c.notification_id, gone.c.received_at).where(
                gone.c.notification_id.is_not(None), gone.c.received_at >= dedupe_since
            ),
        )
        count = select(func.count()).select_from(gone).add_cte(kept.cte("kept"))
        return int((await session.execute(count)).scalar_one())
    kept_ids = select(Delivery.notification_id, Delivery.received_at).where(
        Delivery.id.in_(batch),
        Delivery.notification_id.is_not(None),
        Delivery.received_at >= dedupe_since,
    )
    keep = insert(PurgedNotification).from_select(["notification_id", "received_at"], kept_ids)
    return await _at_once_on_sqlite(session, keep, delete(Delivery).where(Delivery.id.in_(batch)))


async def _at_once_on_sqlite(session: AsyncSession, keep: Insert, remove: Delete) -> int:
    """SQLite: `keep` then `remove` as one transaction of their own, in one call to the driver's
    thread; how many rows `remove` deleted.

    A transaction run statement by statement holds the one write lock until the event loop
    comes back to it after each statement, which under a full webhook load is most of a batch's
    time, and the webhook writer waits all that time. Run as one script, the lock is held only
    while SQLite works. Both statements pick the same batch: nothing else writes in between.
    The SQL is rendered with its values inline (a script takes no parameters): cut-off times
    and job states, never text from outside."""
    engine = session.bind
    assert isinstance(engine, AsyncEngine)
    dialect = engine.dialect
    sql = [
        str(statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
        for statement in (keep, remove)
    ]
    async with _own_driver_connection(engine) as driver:
        try:
            await driver.executescript(f"BEGIN IMMEDIATE; {sql[0]}; {sql[1]}; COMMIT;")
        except BaseException:
            if driver.in_transaction:
                await driver.rollback()
            raise
        # changes(): the rows the last INSERT, UPDATE or DELETE touched (COMMIT is none).
        async with driver.execute("SELECT changes()") as cursor:
            row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def purge_jobs(
    session: AsyncSession,
    *,
    before: datetime,
    open_states: Sequence[str],
    limit: int,
    dry_run: bool = False,
) -> int:
    """Jobs finished before `before`, with their timeline (the foreign keys cascade); their
    deliveries that are still kept lose the link. The state counts follow by trigger."""
    old = select(Job.id).where(Job.finished_at < before, Job.state.not_in(open_states))
    if dry_run:
        return await _count(session, old)
    ids = await _claim(session, old.order_by(Job.finished_at), Job, limit)
    if ids:
        await session.execute(delete(Job).where(Job.id.in_(ids)))
    return len(ids)


async def purge_status_history(
    session: AsyncSession,
    *,
    before: datetime,
    closed_statuses: Sequence[str],
    limit: int,
    dry_run: bool = False,
) -> int:
    """Component updates received before `before`, and incidents closed before it (with their
    updates); each component's current status stays."""
    updates = select(StatusComponentUpdate.id).where(StatusComponentUpdate.received_at < before)
    incidents = select(StatusIncident.id).where(
        StatusIncident.updated_at < before, StatusIncident.status.in_(closed_statuses)
    )
    if dry_run:
        return await _count(session, updates) + await _count(session, incidents)
    removed = 0
    order = StatusComponentUpdate.received_at
    ids = await _claim(session, updates.order_by(order), StatusComponentUpdate, limit)
    if ids:
        await session.execute(
            delete(StatusComponentUpdate).where(StatusComponentUpdate.id.in_(ids))
        )
        removed += len(ids)
    ids = await _claim(
        session, incidents.order_by(StatusIncident.updated_at), StatusIncident, limit
    )
    if ids:
        await session.execute(delete(StatusIncident).where(StatusIncident.id.in_(ids)))
        removed += len(ids)
    return removed


async def purge_alerts(
    session: AsyncSession, *, before: datetime, limit: int, dry_run: bool = False
) -> int:
    """Alerts raised before `before` that are done with (not waiting to go out, no target still
    being tried), with their deliveries and attempts; and noise windows closed before it."""
    in_flight = exists().where(AlertDelivery.alert_id == Alert.id, AlertDelivery.state == PENDING)
    old = select(Alert.id).where(Alert.raised_at < before, Alert.state != PENDING, ~in_flight)
    windows = delete(AlertWindow).where(AlertWindow.until < before)
    if dry_run:
        return await _count(session, old)
    ids = await _claim(session, old.order_by(Alert.raised_at), Alert, limit)
    if ids:
        await session.execute(delete(Alert).where(Alert.id.in_(ids)))
    await session.execute(windows)
    return len(ids)


async def purge_notification_ids(
    session: AsyncSession, *, before: datetime, limit: int, dry_run: bool = False
) -> int:
    """Kept notification ids older than the dedupe window: the dispatcher is done with them."""
    old = select(PurgedNotification.notification_id).where(PurgedNotification.received_at < before)
    if dry_run:
        return await _count(session, old)
    order = PurgedNotification.received_at
    ids = await _claim(session, old.order_by(order), PurgedNotification, limit)
    if ids:
        await session.execute(
            delete(PurgedNotification).where(PurgedNotification.notification_id.in_(ids))
        )
    return len(ids)


async def purge_idempotency_keys(
    session: AsyncSession, *, before: datetime, limit: int, dry_run: bool = False
) -> int:
    """Idempotency keys made before `before`: a repeat of one now makes a new job. Their jobs
    stay (and still show the key they were made with)."""
    old = select(IdempotencyKey.job_id).where(IdempotencyKey.created_at < before)
    if dry_run:
        return await _count(session, old)
    # By job: each job has at most one key, and the primary key is two columns.
    ids = await _claim(session, old.order_by(IdempotencyKey.created_at), IdempotencyKey, limit)
    if ids:
        await session.execute(delete(IdempotencyKey).where(IdempotencyKey.job_id.in_(ids)))
    return len(ids)


async def purge_dashboard_sessions(
    session: AsyncSession, *, before: datetime, limit: int, dry_run: bool = False
) -> int:
    """Dashboard sessions that expired before `before`: they open nothing any more."""
    old = select(DashboardSession.id).where(DashboardSession.expires_at < before)
    if dry_run:
        return await _count(session, old)
    order = DashboardSession.expires_at
    ids = await _claim(session, old.order_by(order), DashboardSession, limit)
    if ids:
        await session.execute(delete(DashboardSession).where(DashboardSession.id.in_(ids)))
    return len(ids)


async def purge_operations(
    session: AsyncSession,
    *,
    before: datetime,
    ended: Sequence[str],
    limit: int,
    dry_run: bool = False,
) -> int:
    """Bulk operations in an `ended` state that finished before `before`."""
    old = select(Operation.id).where(Operation.state.in_(ended), Operation.finished_at < before)
    if dry_run:
        return await _count(session, old)
    ids = await _claim(session, old.order_by(Operation.finished_at), Operation, limit)
    if ids:
        await session.execute(delete(Operation).where(Operation.id.in_(ids)))
    return len(ids)


async def release_space(session: AsyncSession, *, pages: int) -> None:
    """SQLite: hand up to `pages` free pages back to the file system (an incremental vacuum:
    the file shrinks a little at a time, each step a short hold on the write lock).
    PostgreSQL's autovacuum does this on its own."""
    engine = session.bind
    if not isinstance(engine, AsyncEngine) or engine.dialect.name != "sqlite":
        return
    # On a connection of its own, outside any transaction: the pragma frees one page per step
    # of its statement, and only sqlite3's executescript steps a statement with no result
    # columns to its end (it also commits first, which must not end the caller's transaction).
    async with _own_driver_connection(engine) as driver:
        await driver.executescript(f"PRAGMA incremental_vacuum({int(pages)});")


@contextlib.asynccontextmanager
async def _own_driver_connection(engine: AsyncEngine) -> AsyncIterator[Any]:
    """SQLite: the driver's (aiosqlite's) own connection of a pooled connection, for a script
    that must run outside the caller's transaction and in one call to the driver."""
    async with engine.connect() as connection:
        driver = (await connection.get_raw_connection()).driver_connection
        assert driver is not None
        yield driver


async def free_pages(session: AsyncSession) -> int:
    """SQLite: how many pages of the file are free (0 on PostgreSQL)."""
    if session.get_bind().dialect.name != "sqlite":
        return 0
    return int((await session.execute(text("PRAGMA freelist_count"))).scalar_one())


@dataclass(frozen=True)
class TableSize:
    """How many rows a table holds (an estimate on large PostgreSQL tables) and its oldest."""

    table: str
    rows: int
    oldest: datetime | None
    estimated: bool = False


_AGE_COLUMNS: dict[type[Base], Any] = {
    Delivery: Delivery.received_at,
    Job: Job.submitted_at,
    StatusComponentUpdate: StatusComponentUpdate.received_at,
    StatusIncident: StatusIncident.updated_at,
    Alert: Alert.raised_at,
    PurgedNotification: PurgedNotification.received_at,
    DashboardSession: DashboardSession.created_at,
}
_EXACT_BELOW = 100_000
"""PostgreSQL: tables its statistics put below this many rows are counted exactly."""


async def table_sizes(session: AsyncSession) -> list[TableSize]:
    """Rows and the oldest row's time of each table retention trims."""
    postgres = session.get_bind().dialect.name == "postgresql"
    sizes = []
    for model, column in _AGE_COLUMNS.items():
        name = model.__tablename__
        oldest = (await session.execute(select(func.min(column)))).scalar_one_or_none()
        estimate = await _estimated_rows(session, name) if postgres else None
        if estimate is not None and estimate >= _EXACT_BELOW:
            sizes.append(TableSize(name, estimate, oldest, estimated=True))
            continue
        rows = (await session.execute(select(func.count()).select_from(model))).scalar_one()
        sizes.append(TableSize(name, int(rows), oldest))
    return sizes


async def _estimated_rows(session: AsyncSession, table: str) -> int | None:
    # A count of every row is a full scan on PostgreSQL; the planner's figure is kept by
    # autovacuum and is what an operator watching growth needs.
    query = text("SELECT reltuples::bigint FROM pg_class WHERE relname = :name")
    value = (await session.execute(query, {"name": table})).scalar_one_or_none()
    return None if value is None or value < 0 else int(value)


async def _claim(
    session: AsyncSession, query: Select[Any], model: type[Base], limit: int
) -> list[Any]:
    claim = query.limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        claim = claim.with_for_update(skip_locked=True, of=model)
    return list((await session.execute(claim)).scalars())


async def _count(session: AsyncSession, query: Select[Any]) -> int:
    """How many rows `query` selects: a dry run counts all that would go, not one batch."""
    subquery = query.subquery()
    return int((await session.execute(select(func.count()).select_from(subquery))).scalar_one())
