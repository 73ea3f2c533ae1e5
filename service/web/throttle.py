"""Holding back a client address that guesses tokens (`POST /login`, `/api/` bearer tokens).

Failures are counted in the database (`store.count_auth_failure`), so every worker process and
replica sees the same count: a guesser cannot spread its attempts over `serve --workers`.
Past AUTH_FAILURES_PER_MINUTE from one address, or AUTH_FAILURES_TOTAL_PER_MINUTE from all of
them, further attempts answer 429 until the minute since the window's first failure has
passed. An attempt costs one primary-key read; only a failed one writes. An address whose
token was right is not read again for PASSED_SECONDS (in this process): a guesser's every
wrong token clears that, so its next attempt is read again. The table holds at
most MAX_ADDRESSES rows, so a flood from many addresses cannot grow it; past that, an address
not in it is counted in the total only, and held back once the total is reached.
The webhook paths never come here: they have their signatures and allow-lists.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.types import Scope

from service import metrics, store
from service.settings import Settings
from service.web.sources import Network, client_address

log = logging.getLogger(__name__)

WINDOW_SECONDS = 60.0
PASSED_SECONDS = 5.0
MAX_ADDRESSES = 10_000
UNKNOWN_ADDRESS = "unknown"
"""The key of a sender whose address cannot be told (a forwarded hop that is no address)."""


@dataclass(frozen=True)
class HeldBack:
    retry_after_seconds: int
    reason: str


class AuthThrottle:
    """One process's view of the shared failure counts."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        readers: async_sessionmaker[AsyncSession],
        *,
        per_address: int,
        total: int,
        trusted_proxies: list[Network],
    ) -> None:
        self._sessions = sessions
        # Every authenticated request reads; on SQLite a read-only transaction does not take
        # the write lock, so the API does not queue behind the webhook writer to check it.
        self._readers = readers
        self._passed: dict[str, float] = {}
        """Address -> until when (monotonic) it is not read again: its token was right."""
        self._per_address = per_address
        self._total = total
        self._trusted = trusted_proxies

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        readers: async_sessionmaker[AsyncSession],
    ) -> AuthThrottle:
        return cls(
            sessions,
            readers,
            per_address=settings.AUTH_FAILURES_PER_MINUTE,
            total=settings.AUTH_FAILURES_TOTAL_PER_MINUTE,
            trusted_proxies=list(settings.TRUSTED_PROXIES),
        )

    def address_of(self, scope: Scope) -> str:
        """The client's address, behind TRUSTED_PROXIES as `X-Forwarded-For` says."""
        client = scope.get("client")
        peer = client[0] if client else None
        forwarded = next(
            (v.decode("latin-1") for k, v in scope["headers"] if k == b"x-forwarded-for"), None
        )
        address = client_address(peer, forwarded, self._trusted)
        return UNKNOWN_ADDRESS if address is None else str(address)

    async def held_back(self, address: str) -> HeldBack | None:
        """Why and for how long `address` may not try a token now, or None if it may."""
        if self._passed.get(address, 0.0) > time.monotonic():
            return None
        now = time.time()
        async with self._readers.begin() as session:
            counts = await store.auth_failure_counts(session, address, since=now - WINDOW_SECONDS)
            own = counts.get(address)
            if own is not None and own.failures >= self._per_address:
                held = HeldBack(_retry_after(own, now), "address")
            else:
                total = counts.get(store.ALL_ADDRESSES)
                if total is None or total.failures < self._total:
                    return None
                if own is None and await store.count_auth_addresses(session) < MAX_ADDRESSES:
                    return None  # an address that has not failed yet still gets its try
                held = HeldBack(_retry_after(total, now), "total")
        metrics.AUTH_REFUSED_HELD_BACK.inc()
        return held

    def passed(self, address: str) -> None:
        """`address` was not held back and its token was right: trust it for PASSED_SECONDS."""
        if len(self._passed) >= MAX_ADDRESSES:
            self._passed.clear()  # bounded: a flood of addresses costs reads, never memory
        self._passed[address] = time.monotonic() + PASSED_SECONDS

    async def failed(self, address: str, *, where: str) -> None:
        """Count one wrong token from `address`; the failure that reaches the limit is logged
        (the address, never the token) and counted in the metric."""
        self._passed.pop(address, None)
        metrics.AUTH_WRONG_TOKEN.inc()
        now = time.time()
        async with self._sessions.begin() as session:
            counts = await store.count_auth_failure(
                session,
                address,
                now=now,
                window_seconds=WINDOW_SECONDS,
                max_addresses=MAX_ADDRESSES,
            )
        own = counts.get(address)
        if own is not None and own.failures == self._per_address:
            metrics.AUTH_HELD_BACK.labels("address").inc()
            log.warning(
                "auth: %s is held back for %d s after %d wrong tokens in a minute (%s)",
                address,
                _retry_after(own, now),
                own.failures,
                where,
            )
        total = counts.get(store.ALL_ADDRESSES)
        if total is not None and total.failures == self._total:
            metrics.AUTH_HELD_BACK.labels("total").inc()
            log.warning(
                "auth: %d wrong tokens from all addresses in a minute: every address that "
                "failed is held back for %d s",
                total.failures,
                _retry_after(total, now),
            )


def _retry_after(count: store.FailureCount, now: float) -> int:
    return max(1, math.ceil(count.started + WINDOW_SECONDS - now))
