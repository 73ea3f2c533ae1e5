"""Pacing of requests to Visma: each company's hourly budget, as Visma's own headers tell it.

Visma meters requests per company and client, in a budget per hour that every answer
announces (`X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset` in seconds), with
`Retry-After` on a 429. The headers carry the budget all replicas share, so each replica paces
from them without talking to the others: as the others spend, the remaining figure each one
sees falls, and its spacing grows.

The rule (`read_spacing`, `CompanyBudget.admit`):

- A submission goes whenever the company's budget has a request left: people wait for it.
- State reads can wait, so they spread what remains, less a reserve kept for submissions, over
  the time to the reset: one read every `seconds_to_reset / (remaining - reserve)`, with a short
  burst allowed. With nothing left above the reserve, reads wait for the reset.
- After a 429 nothing goes for that company until its `Retry-After` has passed, in full.
- Nothing here sleeps long: `admit` says how long to wait, and the caller parks the work (the
  job's next check time) rather than holding a task, or shutdown, in a sleep. One company's
  wait never holds back another's requests.
- A reset or Retry-After in whole seconds is read as "not before": a server that counts the
  seconds left rounds them down, so "12" means the window ends between 12 and 13 s from now.
  Work parked until a reset goes after it (`not_before`), never a fraction early, which would
  earn a 429 whose Retry-After costs a whole window.
- Before Visma has said anything (the first request), requests go; the answer tells the rest.
- Replicas share the budget without talking: between two of its answers a replica sees how
  far `remaining` fell and how much of that it sent itself; the ratio (smoothed) says how many
  spend at its pace, and its spacing is stretched by it, so together they keep to the rule.

A process-wide ceiling (`Pacer`, VISMA_MAX_REQUESTS_PER_SECOND) stays in front of it all, so a
burst of due work never becomes hundreds of requests at once.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

RequestKind = Literal["submit", "read"]

READ_BURST = 5
"""State reads that may go back to back before the spacing applies."""
UNKNOWN_RESET_WAIT_SECONDS = 5.0
"""How long to wait when nothing is left and Visma said no reset time."""
MAX_SHARERS = 64.0
"""The most spenders a replica believes share the budget with it (a bound on outside input)."""
SHARERS_SMOOTHING = 0.2
"""Weight of each new sample of how many spend alongside (an exponential moving average)."""
MAX_WAIT_SECONDS = 86400.0
"""The longest wait believed from a header (outside input is bounded; a window is an hour)."""
EDGE_MARGIN_SECONDS = 0.25
"""Added to every announced wait: the answer's time on the wire, and the two clocks' drift."""


def not_before(seconds: float) -> float:
    """The seconds to wait for an announced `seconds` (a reset, a Retry-After) to have passed.

    Whole seconds may be rounded down (Visma does not document which way it rounds), so the
    instant is up to a second later than announced; a fraction is taken as exact. Either way
    the margin is added. Costs at most a second and a quarter per window of an hour.
    """
    seconds = float(min(max(seconds, 0.0), MAX_WAIT_SECONDS))
    whole = 1.0 if seconds.is_integer() else 0.0
    return seconds + whole + EDGE_MARGIN_SECONDS


def read_spacing(*, remaining: int, seconds_to_reset: float, reserve: int) -> float | None:
    """Seconds between state reads so that what remains above the `reserve` lasts until the
    reset; None when nothing remains above it (reads wait for the reset)."""
    spendable = remaining - reserve
    if spendable <= 0:
        return None
    return max(0.0, seconds_to_reset) / spendable


def reserve_for(limit: int, share: float) -> int:
    """Requests of a budget of `limit` kept for submissions."""
    return math.ceil(limit * share)


@dataclass(frozen=True)
class BudgetSnapshot:
    """A company's budget as this process last heard it (None: Visma has not said yet)."""

    tenant: str
    limit: int | None
    remaining: int | None
    reset_seconds: float | None
    """Seconds until the window resets, as announced, counted down since."""
    paused_seconds: float
    """Seconds still to wait after a 429 (0: none)."""
    read_spacing_seconds: float | None
    """The spacing of state reads now (None: unknown, or reads wait for the reset)."""
    sharers: float = 1.0
    """How many spend this budget at this process's pace, as it has learnt."""

    def as_json(self) -> dict[str, float | int | None]:
        """The snapshot as `/readyz` shows it."""
        return {
            "limit": self.limit,
            "remaining": self.remaining,
            "resetSeconds": _rounded(self.reset_seconds),
            "pausedSeconds": _rounded(self.paused_seconds),
            "readSpacingSeconds": _rounded(self.read_spacing_seconds),
        }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


class CompanyBudget:
    """One company's budget: what Visma last announced, less what this process sent since."""

    def __init__(self, tenant: str, *, reserve_share: float) -> None:
        self.tenant = tenant
        self._reserve_share = reserve_share
        self._limit: int | None = None
        self._remaining: int | None = None
        self._reset_at: float | None = None
        self._paused_until = 0.0
        self._next_read_at = 0.0  # GCRA: when the next read is due at the spacing
        self._sharers = 1.0  # how many spend this budget at this replica's pace (estimated)
        self._heard: tuple[int, float] | None = None  # (remaining, reset_at) last announced
        self._sent_since_heard = 0

    def admit(self, kind: RequestKind, *, now: float) -> float:
        """0 to send now (counted against the budget), else the seconds to wait first."""
        if now < self._paused_until:
            return self._paused_until - now
        if self._reset_at is not None and now >= self._reset_at:
            # The window has reset: the budget is whole again until an answer says otherwise.
            self._remaining, self._reset_at = self._limit, None
        if self._remaining is None or self._limit is None:
            self._sent_since_heard += 1
            return 0.0  # Visma has not told us yet: the answer will
        to_reset = None if self._reset_at is None else self._reset_at - now
        if kind == "submit":
            if self._remaining > 0:
                self._remaining -= 1
                self._sent_since_heard += 1
                return 0.0
            return to_reset if to_reset is not None else UNKNOWN_RESET_WAIT_SECONDS
        reserve = reserve_for(self._limit, self._reserve_share)
        if to_reset is None:
            # No reset announced (or a fresh window): go while above the reserve; the next
            # answer tells the rest. Without one, look again shortly.
            if self._remaining <= reserve:
                return UNKNOWN_RESET_WAIT_SECONDS
            self._remaining -= 1
            self._sent_since_heard += 1
            return 0.0
        spacing = read_spacing(
            remaining=self._remaining, seconds_to_reset=to_reset, reserve=reserve
        )
        if spacing is None:
            return to_reset
        spacing *= self._sharers
        due = max(self._next_read_at, now)
        tolerance = spacing * (READ_BURST - 1)
        if due - now > tolerance:
            return due - tolerance - now
        self._next_read_at = due + spacing
        self._remaining -= 1
        self._sent_since_heard += 1
        return 0.0

    def observe(self, headers: Mapping[str, str], *, now: float) -> None:
        """Take in the X-RateLimit-* of an answer (any answer; a 429's too)."""
        limit = _number(headers.get("x-ratelimit-limit"))
        remaining = _number(headers.get("x-ratelimit-remaining"))
        reset = _number(headers.get("x-ratelimit-reset"))
        if limit is None or remaining is None:
            return
        self._limit = max(0, int(limit))
        self._remaining = max(0, int(remaining))
        # "0" is a reset less than a second away, not an unknown one.
        self._reset_at = None if reset is None else now + not_before(reset)
        self._learn_sharers(self._remaining)
        self._heard = (self._remaining, self._reset_at or now)

    def _learn_sharers(self, remaining: int) -> None:
        """How many spend at this pace: the fall in `remaining` since the last answer, over
        what this replica sent meanwhile (same window only)."""
        sent, self._sent_since_heard = self._sent_since_heard, 0
        if self._heard is None or sent <= 0:
            return
        last_remaining, last_reset_at = self._heard
        same_window = self._reset_at is not None and abs(self._reset_at - last_reset_at) < 2.0
        if not same_window or remaining > last_remaining:
            return
        sample = min(MAX_SHARERS, max(1.0, (last_remaining - remaining) / sent))
        self._sharers += SHARERS_SMOOTHING * (sample - self._sharers)

    def pause(self, seconds: float, *, now: float) -> None:
        """Send nothing for this company for `seconds` (Visma's Retry-After, in full)."""
        self._paused_until = max(self._paused_until, now + min(seconds, MAX_WAIT_SECONDS))
        self._remaining = 0

    def snapshot(self, *, now: float) -> BudgetSnapshot:
        """The budget as it stands, for `/readyz`."""
        to_reset = None if self._reset_at is None else max(0.0, self._reset_at - now)
        spacing = None
        if self._limit is not None and self._remaining is not None and to_reset is not None:
            spacing = read_spacing(
                remaining=self._remaining,
                seconds_to_reset=to_reset,
                reserve=reserve_for(self._limit, self._reserve_share),
            )
            spacing = None if spacing is None else spacing * self._sharers
        return BudgetSnapshot(
            tenant=self.tenant,
            limit=self._limit,
            remaining=self._remaining,
            reset_seconds=to_reset,
            paused_seconds=max(0.0, self._paused_until - now),
            read_spacing_seconds=spacing,
            sharers=self._sharers,
        )

    def restore(self, recorded: BudgetSnapshot, *, now: float) -> None:
        """Start from a budget as recorded (by this service before a restart, or by a replica
        for the CLI), its times already counted down to `now`: a spent budget stays spent
        until its reset, and the number of sharers is not learnt again from one."""
        if self._limit is not None:
            return  # Visma has told this process more recently
        self._limit, self._remaining = recorded.limit, recorded.remaining
        if recorded.reset_seconds is not None:
            self._reset_at = now + recorded.reset_seconds
        self._paused_until = now + recorded.paused_seconds
        self._sharers = min(MAX_SHARERS, max(1.0, recorded.sharers))


def _number(raw: str | None) -> float | None:
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


class Pacer:
    """At most `rate` requests per second from this process, in bursts of at most `burst`.

    The default burst of one spaces requests evenly, so no one-second window ever holds more
    than `rate` requests (plus the one that opens it). Its waits are at most 1/rate seconds.
    """

    def __init__(self, rate: float, *, burst: float = 1.0) -> None:
        self._rate = rate
        self._burst = burst
        self._tokens = self._burst
        self._updated = time.monotonic()
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        """Return when the next request may go."""
        async with self._lock:
            while True:
                now = time.monotonic()
                self._tokens = min(self._burst, self._tokens + (now - self._updated) * self._rate)
                self._updated = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                await asyncio.sleep((1 - self._tokens) / self._rate)
