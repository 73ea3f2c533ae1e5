"""Pacing of requests to Visma: a token bucket shared by every call this process makes.

Polling 500 waiting jobs must not become 500 requests at once. When Visma answers 429, every
caller waits out the reset it announced, not just the one that got the 429.
"""

from __future__ import annotations

import asyncio
import time


class Pacer:
    """At most `rate` requests per second, in bursts of at most `burst`.

    The default burst of one spaces requests evenly, so no one-second window ever holds more
    than `rate` requests (plus the one that opens it).
    """

    def __init__(self, rate: float, *, burst: float = 1.0) -> None:
        self._rate = rate
        self._burst = burst
        self._tokens = self._burst
        self._updated = time.monotonic()
        self._paused_until = 0.0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        """Return when the next request may go."""
        async with self._lock:
            while True:
                now = time.monotonic()
                if now < self._paused_until:
                    await asyncio.sleep(self._paused_until - now)
                    continue
                self._tokens = min(self._burst, self._tokens + (now - self._updated) * self._rate)
                self._updated = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                await asyncio.sleep((1 - self._tokens) / self._rate)

    def pause(self, seconds: float) -> None:
        """Send nothing for `seconds` (Visma said so with a 429)."""
        self._paused_until = max(self._paused_until, time.monotonic() + seconds)
