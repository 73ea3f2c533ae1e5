"""The bulk-operation worker: every replica runs one; each operation runs on the one replica
that holds its lease (renewed at every step), and on another once that replica is gone."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.flows import OperationRun, run_next_operation
from service.logs import FailureLog
from service.visma import VismaClient
from service.workers.background import BackgroundLoop

log = logging.getLogger(__name__)


class OperationWorker:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        visma: VismaClient,
        run: OperationRun,
        *,
        idle_seconds: float = 1.0,
    ) -> None:
        self._sessions = sessions
        self._visma = visma
        self._run = run
        self._idle_seconds = idle_seconds
        self._wake = asyncio.Event()
        self._failures = FailureLog(log, "bulk operation pass")
        self._loop = BackgroundLoop(self.run_forever, name="operations")

    def wake(self) -> None:
        """Look for an operation now (called when one was started here)."""
        self._wake.set()

    async def run_once(self) -> int:
        """Run every operation this replica can claim now; how many it ran."""
        ran = 0
        while await run_next_operation(self._sessions, self._visma, self._run):
            ran += 1
        return ran

    async def run_forever(self) -> None:
        await self._loop.repeat(
            self.run_once, self._failures, idle_seconds=self._idle_seconds, wake=self._wake
        )

    def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()
