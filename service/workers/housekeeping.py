"""Housekeeping: retention's purge, the job-count fold, and a measure of each table's size.

Every replica runs it. The purge takes small batches with a pause after each (claimed with
SKIP LOCKED on PostgreSQL) and gives each pass a bounded share of time, so ingest and the API
never wait on it for long; what is left goes in the next pass. The fold takes only the count
rows it sees, so two replicas at once still leave the right sums.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service import store
from service.domain import Retention
from service.flows import PurgeSettings, purge, utcnow
from service.logs import FailureLog
from service.workers.background import BackgroundLoop

log = logging.getLogger(__name__)

PURGE_SECONDS_PER_PASS = 5.0


class HousekeepingWorker:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        retention: Retention | None = None,
        every_seconds: float = 60.0,
        readers: async_sessionmaker[AsyncSession] | None = None,
    ) -> None:
        self._sessions = sessions
        self._readers = readers or sessions
        self._retention = retention
        self._every_seconds = every_seconds
        self._purge = PurgeSettings(max_seconds=min(PURGE_SECONDS_PER_PASS, every_seconds))
        self._failures = FailureLog(log, "housekeeping pass")
        self._loop = BackgroundLoop(self.run_forever, name="housekeeping")
        self.table_sizes: Sequence[store.TableSize] = ()
        """Each trimmed table's rows and oldest row, as of `measured_at` (for /readyz)."""
        self.measured_at: datetime | None = None

    async def run_once(self) -> int:
        """Purge what retention allows (a pass's share of time), fold the job counts, measure
        the tables; how many rows were purged."""
        purged = 0
        if self._retention is not None:
            removed = await purge(self._sessions, self._retention, self._purge)
            purged = sum(removed.values())
            if purged:
                log.info("housekeeping: purged %s", removed)
        async with self._sessions.begin() as session:
            await store.compact_job_counts(session)
        async with self._readers.begin() as session:
            self.table_sizes = await store.table_sizes(session)
        self.measured_at = utcnow()
        return purged

    async def run_forever(self) -> None:
        while True:
            try:
                await self.run_once()
            except Exception as exc:
                self._failures.failed(exc)
            else:
                self._failures.succeeded()
            await self._loop.pause(self._every_seconds)

    def measured_tables(self) -> tuple[Sequence[store.TableSize], datetime | None]:
        """The tables as the last pass measured them, and when (None: not yet)."""
        return self.table_sizes, self.measured_at

    def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()
