"""Housekeeping: folds the job-count changes that triggers keep adding into one row per state.

Counts stay exact without it (a count is the sum of the rows); it keeps that sum a read of a
few rows instead of one per job change. Replicas may all run it: each fold takes only the rows
it sees, so two at once still leave the right sums.
"""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service import store
from service.workers.background import BackgroundLoop

log = logging.getLogger(__name__)


class HousekeepingWorker:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], *, every_seconds: float = 60.0
    ) -> None:
        self._sessions = sessions
        self._every_seconds = every_seconds
        self._loop = BackgroundLoop(self.run_forever, name="housekeeping")

    async def run_once(self) -> int:
        """Fold the job counts now; how many rows were folded."""
        async with self._sessions.begin() as session:
            return await store.compact_job_counts(session)

    async def run_forever(self) -> None:
        while True:
            try:
                await self.run_once()
            except Exception:
                log.exception("housekeeping: folding job counts failed")
            await self._loop.pause(self._every_seconds)

    def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()
