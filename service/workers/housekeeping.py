"""Housekeeping: retention's purge, the job-count fold, and a measure of each table's size.

Every replica runs it, in two loops. The fold and the measure run once an interval. The purge
runs in passes of at most a second, small batches with a pause after each so that it works
a twentieth of the time at most (claimed with SKIP LOCKED on PostgreSQL): while old rows are left
(a backlog after a burst, or after retention was first switched on) pass follows pass, so the
purge keeps up with any average ingest; once none are, it waits an interval. Ingest and the
API never wait on it for longer than one batch. The fold takes only the count rows it sees, so
two replicas at once still leave the right sums.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service import metrics, store, tracing
from service.domain import Retention
from service.flows import (
    PURGED_TABLES,
    PurgeSettings,
    purge_for_a_while,
    record_budgets,
    restore_budgets,
    utcnow,
)
from service.logs import FailureLog
from service.visma import VismaClient
from service.workers.background import BackgroundLoop

log = logging.getLogger(__name__)

PURGE_SECONDS_PER_PASS = 1.0
"""Short beside the loops' stop grace, so a stopping replica leaves between two passes."""
_KINDS = {table: table.replace(" ", "_") for table in PURGED_TABLES}
_KINDS["purged notification ids"] = "notification_ids"
"""The purge's tables as the `kind` label of its metric."""
PURGE_LOG_SECONDS = 60.0
"""Through a backlog, one log line a minute sums up what went (not one a pass)."""


class HousekeepingWorker:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        retention: Retention | None = None,
        every_seconds: float = 60.0,
        readers: async_sessionmaker[AsyncSession] | None = None,
        purge: PurgeSettings | None = None,
        visma: VismaClient | None = None,
    ) -> None:
        self._sessions = sessions
        self._visma = visma
        self._budgets_restored = False
        self._readers = readers or sessions
        self._retention = retention
        self._every_seconds = every_seconds
        self._purge = purge or PurgeSettings(max_seconds=PURGE_SECONDS_PER_PASS)
        self._failures = FailureLog(log, "housekeeping pass")
        self._purge_failures = FailureLog(log, "retention purge")
        self._loop = BackgroundLoop(self.run_forever, name="housekeeping")
        self._purge_loop = BackgroundLoop(self.purge_forever, name="retention purge")
        self._left: tuple[str, ...] = ()
        """The tables the last pass stopped on with more to go: the next pass takes only those."""
        self._unlogged: Counter[str] = Counter()
        self._logged_at = time.monotonic()
        self.table_sizes: Sequence[store.TableSize] = ()
        """Each trimmed table's rows and oldest row, as of `measured_at` (for /readyz)."""
        self.measured_at: datetime | None = None

    async def run_once(self) -> None:
        """Fold the job counts, measure the tables, and record the rate budgets (the first
        pass starts from those recorded before)."""
        if self._visma is not None:
            if not self._budgets_restored:
                await restore_budgets(self._sessions, self._visma)
                self._budgets_restored = True
            await record_budgets(self._sessions, self._visma)
        async with self._sessions.begin() as session:
            await store.compact_job_counts(session)
        async with self._readers.begin() as session:
            self.table_sizes = await store.table_sizes(session)
        self.measured_at = utcnow()

    async def purge_once(self) -> bool:
        """One pass of the purge; whether it got through all that retention lets go."""
        if self._retention is None:
            return True
        purged = await purge_for_a_while(
            self._sessions, self._retention, self._purge, tables=self._left or PURGED_TABLES
        )
        self._left = purged.left
        for table, rows in purged.rows.items():
            if rows:
                metrics.PURGED_ROWS.labels(_KINDS[table]).inc(rows)
        self._unlogged.update(purged.rows)
        if self._unlogged.total() and (
            purged.done or time.monotonic() - self._logged_at >= PURGE_LOG_SECONDS
        ):
            more = "" if purged.done else " (more to go)"
            log.info("housekeeping: purged %s%s", dict(+self._unlogged), more)
            self._unlogged.clear()
            self._logged_at = time.monotonic()
        return purged.done

    async def run_forever(self) -> None:
        while True:
            try:
                with tracing.span("housekeeping pass"):  # a trace of its own
                    await self.run_once()
            except Exception as exc:
                self._failures.failed(exc)
            else:
                self._failures.succeeded()
            await self._loop.pause(self._every_seconds)

    async def purge_forever(self) -> None:
        while True:
            done = True
            try:
                with tracing.span("purge pass"):
                    done = await self.purge_once()
            except Exception as exc:
                self._purge_failures.failed(exc)
            else:
                self._purge_failures.succeeded()
            # Rows left: the next pass at once (each pass keeps to its share of the time).
            await self._purge_loop.pause(self._every_seconds if done else 0)

    def measured_tables(self) -> tuple[Sequence[store.TableSize], datetime | None]:
        """The tables as the last pass measured them, and when (None: not yet)."""
        return self.table_sizes, self.measured_at

    def start(self) -> None:
        self._loop.start()
        if self._retention is not None:
            self._purge_loop.start()

    async def stop(self) -> None:
        await self._purge_loop.stop()
        await self._loop.stop()
