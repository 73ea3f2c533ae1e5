"""Chaos: the faults `SimulatorConfig` asks for, each decided with one seeded random.Random.

`Chaos` makes the decisions (which request gets a 429 or a 503, which notification is dropped,
duplicated or delayed, which 202 is lost) and counts them; `WebhookHold` delays and reorders
notifications before they reach the dispatcher. Both read the config on every decision, so a
change at run time takes effect at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from service.simulator.config import SimulatorConfig
from service.simulator.dispatcher import DeliveryAttempt, Notification, WebhookDispatcher

FaultReason = Literal["rate_limit", "rate_limit_share", "rate_budget", "server_error"]
# Visma's docs name the headers and say Reset and Retry-After count seconds
# (docs.vismasoftware.no, "Rate Limits"); Visma's own limit is a fixed window per hour per
# company and client ("4-fixed-window"). The simulator uses a per-second token bucket instead
# so tests of pacing run in seconds; the policy name says so.
RATE_LIMIT_POLICY = "simulator-token-bucket"
# The per-company budget (`rate_budget`) is the fixed window Visma describes; its window length
# is configurable so tests of an "hour" run in seconds.
BUDGET_POLICY = "simulator-fixed-window"
# What X-RateLimit-Limit says for a random 429 when no bucket is set: Visma does not publish
# its number, so this is a placeholder.
NOMINAL_RATE_LIMIT = 1000
SHARE_RETRY_AFTER_SECONDS = 1
"""Reset and Retry-After of a random (share) 429: the next request's fate is random anyway."""
SERVER_ERROR_STATUS = 503
"""503 rather than 500: what a gateway in front of an overloaded or restarting ERP answers."""


@dataclass
class ChaosCounters:
    """How often each chaos mode struck, for `GET /_sim/stats`."""

    webhooks_dropped: int = 0
    webhooks_delayed: int = 0
    webhooks_duplicated: int = 0
    webhooks_reordered: int = 0
    """Notifications released from the reorder window at another place than they came in."""
    rate_limited: int = 0
    server_errors: int = 0
    forgotten_reads: int = 0
    accepts_dropped: int = 0

    def to_json(self) -> dict[str, int]:
        """The counters as a JSON object."""
        return dataclasses.asdict(self)


class TokenBucket:
    """`rate` tokens per second, holding at most max(1, rate); each request takes one."""

    def __init__(self, rate: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate)
        self._clock = clock
        self._tokens = self.capacity
        self._updated = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
        self._updated = now

    def take(self) -> bool:
        """Take a token if one is there; False means the request is over the limit."""
        self._refill()
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False

    @property
    def limit(self) -> int:
        """Requests a full bucket admits at once."""
        return max(1, math.floor(self.capacity))

    @property
    def remaining(self) -> int:
        """Requests admitted now before the limit bites."""
        self._refill()
        return math.floor(self._tokens)

    def seconds_until_token(self, rounding: str = "down") -> int:
        """Whole seconds until the next request will be admitted (0 if now)."""
        self._refill()
        return whole_seconds((1 - self._tokens) / self.rate, rounding)

    def seconds_until_full(self, rounding: str = "down") -> int:
        """Whole seconds until the bucket is full again: the X-RateLimit-Reset."""
        self._refill()
        return whole_seconds((self.capacity - self._tokens) / self.rate, rounding)


def whole_seconds(seconds: float, rounding: str) -> int:
    """`seconds` as the whole seconds a header announces (`SimulatorConfig.announce_rounding`).

    Down: what a server computing "seconds left" with integer division says, so the instant
    announced is up to a second before the real one. Up: a client that waits this long is
    admitted. The epsilon keeps float noise (1.0000000001, 0.9999999999) from costing a second.
    """
    if rounding == "up":
        return max(0, math.ceil(seconds - 1e-9))
    return max(0, math.floor(seconds + 1e-9))


@dataclass
class _Window:
    started: float
    used: int = 0


class CompanyBudgets:
    """Visma's budget: `config.rate_budget` requests per company in each fixed window of
    `config.rate_budget_window_seconds`, the window starting with the company's first request.

    Whether Visma's window starts at the first request or on the clock hour is not documented;
    the headers (Reset in seconds) make either look the same to a client.
    """

    def __init__(self, config: SimulatorConfig, *, clock: Callable[[], float]) -> None:
        self._config = config
        self._clock = clock
        self._windows: dict[str, _Window] = {}

    @property
    def enabled(self) -> bool:
        """True when a budget is set."""
        return self._config.rate_budget is not None

    def _window(self, tenant: str) -> _Window:
        now = self._clock()
        window = self._windows.get(tenant)
        if window is None or now >= window.started + self._config.rate_budget_window_seconds:
            window = self._windows[tenant] = _Window(started=now)
        return window

    def take(self, tenant: str) -> bool:
        """Count one request against the company's window; False when the budget is spent."""
        window = self._window(tenant)
        if window.used >= (self._config.rate_budget or 0):
            return False
        window.used += 1
        return True

    def spend(self, tenant: str) -> None:
        """Spend what remains of the company's budget in its current window (chaos)."""
        window = self._window(tenant)
        window.used = max(window.used, self._config.rate_budget or 0)

    def reset_seconds(self, tenant: str) -> int:
        """Whole seconds until the company's window resets (rounded as the config says)."""
        window = self._window(tenant)
        ends = window.started + self._config.rate_budget_window_seconds
        return whole_seconds(ends - self._clock(), self._config.announce_rounding)

    def headers(self, tenant: str) -> dict[str, str]:
        """X-RateLimit-* for the company's window as it stands."""
        limit = self._config.rate_budget or 0
        window = self._window(tenant)
        return {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(max(0, limit - window.used)),
            "X-RateLimit-Reset": str(self.reset_seconds(tenant)),
            "X-RateLimit-Policy": BUDGET_POLICY,
        }

    def to_json(self) -> dict[str, dict[str, int | str]]:
        """Each company's window, as `GET /_sim/budgets` shows it."""
        limit = self._config.rate_budget or 0
        shown: dict[str, dict[str, int | str]] = {}
        for tenant in list(self._windows):
            window = self._window(tenant)
            ends_in = window.started + self._config.rate_budget_window_seconds - self._clock()
            shown[tenant] = {
                "limit": limit,
                "used": window.used,
                "remaining": max(0, limit - window.used),
                "reset": self.reset_seconds(tenant),
                "resetAt": (datetime.now(UTC) + timedelta(seconds=ends_in)).isoformat(),
            }
        return shown


@dataclass(frozen=True)
class RequestFault:
    """A request the simulator refuses on purpose: the status and headers to answer with."""

    reason: FaultReason
    status: int
    headers: dict[str, str] = field(default_factory=dict)


class Chaos:
    """Every chaos decision, from one random.Random seeded with `config.seed`."""

    def __init__(
        self, config: SimulatorConfig, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.config = config
        self.random = random.Random(config.seed)
        self.counters = ChaosCounters()
        self._clock = clock
        self._bucket: TokenBucket | None = None
        self.budgets = CompanyBudgets(config, clock=clock)

    def reseed(self) -> None:
        """Start the random sequence again from `config.seed` (None: fresh entropy)."""
        self.random.seed(self.config.seed)

    def reset_bucket(self) -> None:
        """Forget the token bucket; the next request starts a full one."""
        self._bucket = None

    def _current_bucket(self) -> TokenBucket | None:
        rate = self.config.rate_limit_per_second
        if rate is None:
            self._bucket = None
        elif self._bucket is None or self._bucket.rate != rate:
            # Tests may set config fields directly: follow the config, not a copy of it.
            self._bucket = TokenBucket(rate, clock=self._clock)
        return self._bucket

    def _chance(self, share: float) -> bool:
        # No draw when a mode is off, so a run without chaos uses no randomness at all.
        return share > 0 and self.random.random() < share

    def admit_request(self, tenant: str | None = None) -> RequestFault | None:
        """Decide an ERP API request's fate: None to serve it, else the fault to answer with.

        `tenant` is the company its token acts for (None without a valid token: no budget).
        """
        if tenant is not None and self.budgets.enabled and not self.budgets.take(tenant):
            self.counters.rate_limited += 1
            headers = self.budgets.headers(tenant)
            headers["Retry-After"] = str(self.budgets.reset_seconds(tenant))
            return RequestFault("rate_budget", 429, headers)
        bucket = self._current_bucket()
        if bucket is not None and not bucket.take():
            self.counters.rate_limited += 1
            rounding = self.config.announce_rounding
            retry_after = bucket.seconds_until_token(rounding)
            headers = self._limit_headers(
                bucket.limit,
                remaining=0,
                reset=max(retry_after, bucket.seconds_until_full(rounding)),
            )
            headers["Retry-After"] = str(retry_after)
            return RequestFault("rate_limit", 429, headers)
        if self._chance(self.config.rate_limit_share):
            self.counters.rate_limited += 1
            limit = bucket.limit if bucket is not None else NOMINAL_RATE_LIMIT
            headers = self._limit_headers(limit, remaining=0, reset=SHARE_RETRY_AFTER_SECONDS)
            headers["Retry-After"] = str(SHARE_RETRY_AFTER_SECONDS)
            return RequestFault("rate_limit_share", 429, headers)
        if self._chance(self.config.server_error_share):
            self.counters.server_errors += 1
            return RequestFault("server_error", SERVER_ERROR_STATUS)
        return None

    def rate_limit_headers(self, tenant: str | None = None) -> dict[str, str]:
        """X-RateLimit-* for an admitted response (Visma sends them on every answer); {} if off.
        The company's budget, when one is set, is what they announce."""
        if tenant is not None and self.budgets.enabled:
            return self.budgets.headers(tenant)
        bucket = self._current_bucket()
        if bucket is None:
            return {}
        return self._limit_headers(
            bucket.limit,
            remaining=bucket.remaining,
            reset=bucket.seconds_until_full(self.config.announce_rounding),
        )

    @staticmethod
    def _limit_headers(limit: int, *, remaining: int, reset: int) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": str(reset),
            "X-RateLimit-Policy": RATE_LIMIT_POLICY,
        }

    def drop_webhook(self) -> bool:
        """Whether to drop a notification (once per notification, never per attempt)."""
        return self._chance(self.config.webhook_drop_share)

    def duplicate_webhook(self) -> bool:
        """Whether to deliver a notification twice."""
        return self._chance(self.config.webhook_duplicate_share)

    def webhook_hold_seconds(self) -> float:
        """How long a notification waits before its first attempt: delay plus jitter."""
        jitter = self.config.webhook_delay_jitter_seconds
        extra = self.random.uniform(0, jitter) if jitter > 0 else 0.0
        return self.config.webhook_delay_seconds + extra

    def drop_accept(self) -> bool:
        """Whether the 202 of an accepted background call is lost on the way."""
        return self._chance(self.config.accept_drop_share)

    def forgotten(self, received_at: datetime) -> bool:
        """True when a job received at `received_at` is past `forget_after_seconds`."""
        ttl = self.config.forget_after_seconds
        return ttl is not None and datetime.now(UTC) - received_at > timedelta(seconds=ttl)


@dataclass
class _Held:
    notification: Notification
    copies: int
    first_answer: asyncio.Future[DeliveryAttempt]


class WebhookHold:
    """Holds notifications for their delay and the reorder window, then hands them on."""

    def __init__(self, chaos: Chaos, dispatcher: WebhookDispatcher) -> None:
        self._chaos = chaos
        self._dispatcher = dispatcher
        self._delayed: dict[asyncio.TimerHandle, _Held] = {}
        self._window: list[_Held] = []
        self._window_timer: asyncio.TimerHandle | None = None

    @property
    def held(self) -> int:
        """Notifications waiting for their delay or the reorder window."""
        return len(self._delayed) + len(self._window)

    def send(self, notification: Notification, *, copies: int) -> asyncio.Future[DeliveryAttempt]:
        """Send `copies` of a notification after any delay; the future gets the first answer."""
        loop = asyncio.get_running_loop()
        item = _Held(notification, copies, loop.create_future())
        hold = self._chaos.webhook_hold_seconds()
        if hold <= 0:
            self._ready(item)
            return item.first_answer
        self._chaos.counters.webhooks_delayed += 1
        handle: asyncio.TimerHandle

        def release() -> None:
            self._delayed.pop(handle, None)
            self._ready(item)

        handle = loop.call_later(hold, release)
        self._delayed[handle] = item
        return item.first_answer

    def _ready(self, item: _Held) -> None:
        window = self._chaos.config.webhook_reorder_window_seconds
        if window <= 0 and not self._window:
            self._enqueue(item)
            return
        self._window.append(item)
        if self._window_timer is None:
            # The window opens with its first notification; all that join it leave together.
            self._window_timer = asyncio.get_running_loop().call_later(
                max(window, 0.0), self._release_window
            )

    def _release_window(self) -> None:
        self._window_timer = None
        arrived, self._window = self._window, []
        shuffled = list(arrived)
        self._chaos.random.shuffle(shuffled)
        moved = sum(
            1 for before, after in zip(arrived, shuffled, strict=True) if before is not after
        )
        self._chaos.counters.webhooks_reordered += moved
        for item in shuffled:
            self._enqueue(item)

    def _enqueue(self, item: _Held) -> None:
        self._dispatcher.enqueue(
            item.notification,
            copies=item.copies,
            first_answer=item.first_answer,
            gap_seconds=self._chaos.config.webhook_duplicate_gap_seconds,
        )

    def close(self) -> None:
        """Abandon held notifications (at shutdown)."""
        held = [*self._delayed.values(), *self._window]
        for handle in self._delayed:
            handle.cancel()
        if self._window_timer is not None:
            self._window_timer.cancel()
        self._delayed.clear()
        self._window.clear()
        self._window_timer = None
        for item in held:
            item.first_answer.cancel()
