"""Workers stop between two passes, never in the middle of one (its transaction), unless a
pass outlasts the grace period."""

from __future__ import annotations

import asyncio

from service.workers.background import BackgroundLoop


class Worker:
    """A loop whose passes take `pass_seconds` and record whether they ran to the end."""

    def __init__(self, pass_seconds: float, *, grace_seconds: float = 3.0) -> None:
        self.pass_seconds = pass_seconds
        self.started = asyncio.Event()
        self.finished_passes = 0
        self.cut_short = False
        self.loop = BackgroundLoop(self.run, name="test", grace_seconds=grace_seconds)

    async def run(self) -> None:
        while True:
            self.started.set()
            try:
                await asyncio.sleep(self.pass_seconds)  # stands for a pass's transaction
            except asyncio.CancelledError:
                self.cut_short = True
                raise
            self.finished_passes += 1
            await self.loop.pause(60)


async def test_stop_lets_the_pass_in_hand_finish() -> None:
    worker = Worker(pass_seconds=0.2)
    worker.loop.start()
    await worker.started.wait()  # in the middle of its first pass
    await worker.loop.stop()
    assert (worker.finished_passes, worker.cut_short) == (1, False)


async def test_stop_between_passes_is_at_once() -> None:
    worker = Worker(pass_seconds=0)
    worker.loop.start()
    while worker.finished_passes == 0:
        await asyncio.sleep(0.01)
    started = asyncio.get_running_loop().time()
    await worker.loop.stop()  # the loop waits 60 s for its next pass: no need to wait for it
    assert asyncio.get_running_loop().time() - started < 1
    assert not worker.cut_short


async def test_stop_cancels_a_pass_that_outlasts_the_grace_period() -> None:
    worker = Worker(pass_seconds=60, grace_seconds=0.1)
    worker.loop.start()
    await worker.started.wait()
    await worker.loop.stop()
    assert (worker.finished_passes, worker.cut_short) == (0, True)
