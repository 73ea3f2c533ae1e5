"""The one asyncio task behind a worker's loop: started once; stopped between two passes.

A pass opens database transactions. Cancelling one in the middle (say, while SQLite's
`BEGIN IMMEDIATE` waits for the write lock in the driver's thread) can leave that connection
holding the lock after the task is gone. So `stop` waits until the loop is between passes
(in `pause`), and cancels only there, or once a grace period is over (a pass waiting on the
network has no transaction open: flows never call Visma inside one).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any

from service.logs import FailureLog

GRACE_SECONDS = 3.0
"""How long `stop` lets the pass in hand finish before it cancels it."""


class BackgroundLoop:
    def __init__(
        self,
        run: Callable[[], Coroutine[Any, Any, None]],
        *,
        name: str,
        grace_seconds: float = GRACE_SECONDS,
    ) -> None:
        self._run = run
        self._name = name
        self._grace_seconds = grace_seconds
        self._task: asyncio.Task[None] | None = None
        self._between_passes = asyncio.Event()

    def start(self) -> None:
        """Start the loop, unless it runs already."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self._name)

    async def pause(self, seconds: float, wake: asyncio.Event | None = None) -> None:
        """Wait between two passes: `seconds`, or until `wake` is set."""
        self._between_passes.set()
        try:
            if wake is None:
                await asyncio.sleep(seconds)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), timeout=seconds)
        finally:
            self._between_passes.clear()

    async def repeat(
        self,
        one_pass: Callable[[], Coroutine[Any, Any, object]],
        failures: FailureLog,
        *,
        idle_seconds: float,
        wake: asyncio.Event | None = None,
    ) -> None:
        """Run `one_pass` over and over, waiting `idle_seconds` (or until `wake`) between two.
        A failing pass (a database or programming error) is logged, never ends the loop."""
        while True:
            if wake is not None:
                wake.clear()
            try:
                await one_pass()
            except Exception as exc:
                failures.failed(exc)
            else:
                failures.succeeded()
            await self.pause(idle_seconds, wake)

    async def stop(self) -> None:
        """Stop the loop between two passes (or after the grace period) and wait for it."""
        task, self._task = self._task, None
        if task is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._between_passes.wait(), timeout=self._grace_seconds)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
