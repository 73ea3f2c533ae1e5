"""Purging: what retention says is old goes, a small batch per short transaction.

Each batch is a transaction of its own, with a pause after it, so ingest and the API wait on
a purge for one batch at most (on SQLite every transaction that writes takes the one write
lock). Replicas may purge at once: on PostgreSQL each batch is claimed with SKIP LOCKED; on
SQLite the lock takes them in turn. After deliveries go, SQLite hands the freed pages back to
the file system a few at a time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service import store
from service.domain import (
    CLOSED_STATUSES,
    OPEN_STATES,
    UNFINISHED,
    Cutoffs,
    OperationState,
    Retention,
)
from service.flows.clock import utcnow

OPEN = sorted(state.value for state in OPEN_STATES)
CLOSED = sorted(CLOSED_STATUSES)
ENDED_OPERATIONS = sorted(s.value for s in OperationState if s.value not in UNFINISHED)
PURGED_TABLES = (
    "deliveries",
    "jobs",
    "status history",
    "alerts",
    "purged notification ids",
    "idempotency keys",
    "dashboard sessions",
    "operations",
)


@dataclass(frozen=True)
class PurgeSettings:
    """How a purge runs: batch size, the pause between batches, and how long at most."""

    batch_size: int = 500
    duty: float = 0.05
    """The share of time a purge spends in its batches: after a batch it pauses so long that
    it works at most this share (on SQLite each batch holds the one write lock, and it shares
    the event loop with the webhook path). At 0.05 a purge removes about 2,000 inbox rows a
    second on an idle machine and 500-800 beside a full webhook load (make bench), far more
    than the inbox takes in on average; at 0.1 the full load lost about a tenth."""
    pause_seconds: float = 0.01
    """The shortest pause after a batch."""
    max_seconds: float | None = None
    """Stop after this long (one housekeeping pass); None: until all is done."""
    vacuum_pages: int = 256
    """SQLite: free pages given back per step (1 MiB with 4 KiB pages)."""


@dataclass(frozen=True)
class Purged:
    """What a purge removed (or, dry, would remove) per table, and whether it got to the end."""

    rows: dict[str, int]
    left: tuple[str, ...]
    """The tables it stopped on at `max_seconds` with more to go (none: it got to the end)."""

    @property
    def done(self) -> bool:
        return not self.left


async def purge(
    sessions: async_sessionmaker[AsyncSession],
    retention: Retention,
    settings: PurgeSettings,
    *,
    dry_run: bool = False,
    now: datetime | None = None,
) -> dict[str, int]:
    """Remove (or, with `dry_run`, count) what is older than `retention` allows; how many rows
    of each kind."""
    return (await purge_for_a_while(sessions, retention, settings, dry_run=dry_run, now=now)).rows


async def purge_for_a_while(
    sessions: async_sessionmaker[AsyncSession],
    retention: Retention,
    settings: PurgeSettings,
    *,
    dry_run: bool = False,
    now: datetime | None = None,
    tables: Sequence[str] = PURGED_TABLES,
) -> Purged:
    """Purge `tables` as `purge` does, for at most `settings.max_seconds`. The tables take
    turns, one batch each, so a large backlog in one (the inbox after a burst) holds up none of
    the others. A pass that goes on from one that stopped early takes only the tables that
    pass left (`Purged.left`): on SQLite every batch, even an empty one, takes the write lock."""
    cutoffs = retention.cutoffs(now or utcnow())
    deadline = None if settings.max_seconds is None else time.monotonic() + settings.max_seconds
    removed = dict.fromkeys(PURGED_TABLES, 0)
    left = list(tables)
    turn = 0
    while left and (deadline is None or time.monotonic() < deadline):
        turn %= len(left)
        table = left[turn]
        started = time.monotonic()
        async with sessions.begin() as session:
            count = await _purge_batch(session, table, cutoffs, settings, dry_run)
        removed[table] += count
        if dry_run or count < settings.batch_size:
            del left[turn]  # that table is done: the next one takes its turn
        else:
            turn += 1
        if not dry_run:
            await _pause(settings, time.monotonic() - started)
    if not dry_run and removed["deliveries"] + removed["jobs"] > 0:
        await give_space_back(sessions, settings, deadline=deadline)
    return Purged(removed, left=tuple(left))


async def _purge_batch(
    session: AsyncSession, table: str, cutoffs: Cutoffs, settings: PurgeSettings, dry_run: bool
) -> int:
    limit = settings.batch_size
    if table == "deliveries" and cutoffs.deliveries is not None:
        return await store.purge_deliveries(
            session,
            before=cutoffs.deliveries,
            dedupe_since=cutoffs.dedupe,
            open_states=OPEN,
            limit=limit,
            dry_run=dry_run,
        )
    if table == "jobs" and cutoffs.jobs is not None:
        return await store.purge_jobs(
            session, before=cutoffs.jobs, open_states=OPEN, limit=limit, dry_run=dry_run
        )
    if table == "status history" and cutoffs.status is not None:
        return await store.purge_status_history(
            session, before=cutoffs.status, closed_statuses=CLOSED, limit=limit, dry_run=dry_run
        )
    if table == "alerts" and cutoffs.alerts is not None:
        return await store.purge_alerts(
            session, before=cutoffs.alerts, limit=limit, dry_run=dry_run
        )
    if table == "idempotency keys":
        return await store.purge_idempotency_keys(
            session, before=cutoffs.idempotency, limit=limit, dry_run=dry_run
        )
    if table == "dashboard sessions":
        return await store.purge_dashboard_sessions(
            session, before=cutoffs.sessions, limit=limit, dry_run=dry_run
        )
    if table == "operations" and cutoffs.jobs is not None:
        # An ended operation is kept as long as the jobs it made.
        return await store.purge_operations(
            session, before=cutoffs.jobs, ended=ENDED_OPERATIONS, limit=limit, dry_run=dry_run
        )
    if table == "purged notification ids":
        return await store.purge_notification_ids(
            session, before=cutoffs.dedupe, limit=limit, dry_run=dry_run
        )
    return 0


async def give_space_back(
    sessions: async_sessionmaker[AsyncSession],
    settings: PurgeSettings,
    *,
    deadline: float | None = None,
) -> int:
    """SQLite: shrink the file by its free pages, a step at a time; how many were free."""
    if deadline is not None and time.monotonic() >= deadline:
        return 0  # no time left in this pass: the space is reused meanwhile, and freed later
    async with sessions.begin() as session:
        free = await store.free_pages(session)
    left = free
    while left > 0 and (deadline is None or time.monotonic() < deadline):
        started = time.monotonic()
        async with sessions.begin() as session:
            await store.release_space(session, pages=settings.vacuum_pages)
        left -= settings.vacuum_pages
        await _pause(settings, time.monotonic() - started)
    return free


async def _pause(settings: PurgeSettings, worked_seconds: float) -> None:
    """Let others work for long enough that the purge keeps to its share of the time."""
    idle = worked_seconds * (1 - settings.duty) / settings.duty
    await asyncio.sleep(max(settings.pause_seconds, idle))
