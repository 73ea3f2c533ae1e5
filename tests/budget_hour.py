"""A simulated hour of Visma's rate budget: requests spent versus the budget, per rule.

Run `python -m tests.budget_hour` for the figures in docs/architecture.md ("Pacing"). The
model: one company, a fixed window of `limit` requests per hour shared by every replica; a
backlog of state reads large enough that each replica always has one to do (the worst case:
hundreds of open jobs polled), and submissions arriving evenly. Each replica sends at most
VISMA_MAX_REQUESTS_PER_SECOND (10). Time is simulated, in steps of 0.1 s.

- `fixed`: the old pacing, 10 requests a second per replica, pausing only after a 429.
- `budget`: `service.visma.pacing.CompanyBudget`, fed each answer's X-RateLimit-* headers.

Visma's side announces the seconds to its reset rounded down, as a server computing "seconds
left" does (whether Visma's rounds down or up is not documented; down is the case a client can
get wrong). The run goes on a minute past the hour, so the window's edge is part of it: with
more submissions than the budget holds (`--spent`), they wait for the reset and go at once.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from service.visma.client import budget_wait
from service.visma.pacing import CompanyBudget

TICKS_PER_SECOND = 10
STEP = 1 / TICKS_PER_SECOND
CEILING_PER_SECOND = 10
BUCKET_SECONDS = 600
HOUR = 3600.0
TAIL_SECONDS = 60.0
"""Simulated past the hour, so that what happens at the window's edge is counted."""


@dataclass
class Visma:
    """The metering side: a fixed window per hour, its headers on every answer."""

    limit: int
    window: float = 3600.0
    used: int = 0

    current: int = 0
    """The window `used` counts in."""

    def answer(self, now: float) -> tuple[int, dict[str, str]]:
        if int(now // self.window) != self.current:
            self.current, self.used = int(now // self.window), 0
        reset = self.window - (now % self.window)
        headers = {
            "x-ratelimit-limit": str(self.limit),
            "x-ratelimit-reset": str(int(reset)),  # rounded down
        }
        if self.used >= self.limit:
            headers |= {"x-ratelimit-remaining": "0", "retry-after": str(int(reset))}
            return 429, headers
        self.used += 1
        headers["x-ratelimit-remaining"] = str(self.limit - self.used)
        return 200, headers


@dataclass
class HourResult:
    rule: str
    replicas: int
    limit: int
    sent: list[int] = field(default_factory=list)
    """Requests Visma processed, per 10-minute bucket."""
    refused: int = 0
    """429s."""
    refused_at_edge: int = 0
    """429s within a second before a window's end (requests sent at a reset read too early)."""
    submissions_sent: int = 0
    submissions_offered: int = 0
    longest_submission_wait: float = 0.0

    @property
    def spent(self) -> int:
        return sum(self.sent)


def simulate(
    rule: str, *, replicas: int = 2, limit: int = 15000, submissions_per_hour: int = 1200
) -> HourResult:
    """One hour (and the start of the next, where any wait ends) under `rule`.

    `sent` counts the hour's requests; the minute after it only shows how the reset is met."""
    visma = Visma(limit)
    result = HourResult(rule, replicas, limit, sent=[0] * 6)
    budgets = [CompanyBudget("company", reserve_share=0.1) for _ in range(replicas)]
    paused_until = [0.0] * replicas
    waiting: list[list[float]] = [[] for _ in range(replicas)]  # submissions' arrival times
    every = 3600.0 / submissions_per_hour
    next_submission = 0.0
    ticks = int((HOUR + TAIL_SECONDS) * TICKS_PER_SECOND)
    per_tick = CEILING_PER_SECOND * STEP
    allowance = [0.0] * replicas
    for tick in range(ticks):
        now = tick / TICKS_PER_SECOND
        while next_submission <= now:
            waiting[int(next_submission / every) % replicas].append(next_submission)
            result.submissions_offered += 1
            next_submission += every
        for replica in range(replicas):
            allowance[replica] = min(1.0, allowance[replica] + per_tick)
            while allowance[replica] >= 1:
                kind = "submit" if waiting[replica] else "read"
                if rule == "fixed":
                    if now < paused_until[replica]:
                        break
                elif budgets[replica].admit(kind, now=now) > 0:
                    if kind == "submit":
                        break
                    break
                allowance[replica] -= 1
                status, headers = visma.answer(now)
                budgets[replica].observe(headers, now=now)
                if status == 429:
                    result.refused += 1
                    result.refused_at_edge += HOUR - 1 <= now < HOUR
                    wait = budget_wait(headers)
                    budgets[replica].pause(wait, now=now)
                    # The old client capped Retry-After at 60 s.
                    paused_until[replica] = now + min(wait, 60.0)
                    continue
                if now < HOUR:
                    result.sent[int(now // BUCKET_SECONDS)] += 1
                if kind == "submit":
                    arrived = waiting[replica].pop(0)
                    result.submissions_sent += 1
                    result.longest_submission_wait = max(
                        result.longest_submission_wait, now - arrived
                    )
    return result


def report(result: HourResult) -> str:
    buckets = " ".join(f"{n:>6}" for n in result.sent)
    return (
        f"{result.rule:>6} x{result.replicas}  spent {result.spent:>6} of {result.limit}"
        f"  per 10 min: {buckets}  429s {result.refused:>6} ({result.refused_at_edge} at the reset)"
        f"  submissions {result.submissions_sent}/{result.submissions_offered}"
        f" (longest wait {result.longest_submission_wait:.1f} s)"
    )


def main() -> int:
    for replicas in (1, 3):
        for rule in ("fixed", "budget"):
            print(report(simulate(rule, replicas=replicas)))
    # More submissions than the budget holds: they wait for the reset, and go at it.
    for replicas in (1, 3):
        print(report(simulate("budget", replicas=replicas, **SPENT)))
    return 0


SPENT = {"limit": 3000, "submissions_per_hour": 6000}
"""A budget that submissions alone spend before the hour ends."""


if __name__ == "__main__":
    sys.exit(main())
