"""The state-read worker: resolves jobs whose webhook arrived or whose poll is due.

It claims due jobs (SKIP LOCKED on PostgreSQL, so replicas share the work), reads each job's
state from Visma with no transaction open, and records the outcome. A webhook wakes it at once;
otherwise it looks for due work every `idle_seconds`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.flows import ResolveSettings, resolve_due_jobs
from service.logs import FailureLog
from service.visma import VismaClient
from service.workers.background import BackgroundLoop

log = logging.getLogger(__name__)


class ResolverWorker:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        visma: VismaClient,
        settings: ResolveSettings,
        *,
        idle_seconds: float = 1.0,
    ) -> None:
        self._sessions = sessions
        self._visma = visma
        self._settings = settings
        self._idle_seconds = idle_seconds
        self._wake = asyncio.Event()
        self._failures = FailureLog(log, "resolver pass")
        self._loop = BackgroundLoop(self.run_forever, name="resolver")

    def wake(self, _job_ids: Sequence[str] = ()) -> None:
        """Look for due work now (called after a webhook is committed)."""
        self._wake.set()

    async def run_once(self) -> int:
        """Resolve every job due now; returns how many were claimed in all."""
        total = 0
        while claimed := await resolve_due_jobs(self._sessions, self._visma, self._settings):
            total += claimed
        return total

    async def run_forever(self) -> None:
        await self._loop.repeat(
            self.run_once, self._failures, idle_seconds=self._idle_seconds, wake=self._wake
        )

    def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()
