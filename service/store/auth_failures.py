"""Failed authentications per client address and minute (`auth_failures`), shared by every
worker and replica. Functions take a session and never commit."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import case, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from service.store.models import AuthFailureWindow

ALL_ADDRESSES = "*"
"""The row that counts every address's failures together."""


@dataclass(frozen=True)
class FailureCount:
    failures: int
    started: float
    """When the window's first failure came, in seconds since the epoch."""


async def auth_failure_counts(
    session: AsyncSession, address: str, *, since: float
) -> dict[str, FailureCount]:
    """The address's and the total's counts in windows that started at `since` or later (one
    primary-key read); a key is missing when its window has passed or never began."""
    rows = await session.execute(
        select(AuthFailureWindow).where(
            AuthFailureWindow.address.in_((address, ALL_ADDRESSES)),
            AuthFailureWindow.started >= since,
        )
    )
    return {row.address: FailureCount(row.failures, row.started) for row in rows.scalars()}


async def count_auth_addresses(session: AsyncSession) -> int:
    """How many addresses have a row (the total's row not counted)."""
    found = await session.scalar(
        select(func.count()).where(AuthFailureWindow.address != ALL_ADDRESSES)
    )
    return int(found or 0)


async def count_auth_failure(
    session: AsyncSession,
    address: str,
    *,
    now: float,
    window_seconds: float,
    max_addresses: int,
) -> dict[str, FailureCount]:
    """Add one failure to the address's and the total's windows (a window that has passed
    starts again at `now`), forget windows that have passed, and return the new counts. With
    `max_addresses` rows already held, an address without one is counted in the total only."""
    cutoff = now - window_seconds
    await session.execute(delete(AuthFailureWindow).where(AuthFailureWindow.started < cutoff))
    keys = [ALL_ADDRESSES]
    held = await session.scalar(select(func.count()).where(AuthFailureWindow.address == address))
    if held or await count_auth_addresses(session) < max_addresses:
        keys.append(address)
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = dialect.insert(AuthFailureWindow).values(
        [{"address": key, "started": now, "failures": 1} for key in keys]
    )
    passed = AuthFailureWindow.started < cutoff
    upsert = statement.on_conflict_do_update(
        index_elements=["address"],
        set_={
            "failures": case((passed, 1), else_=AuthFailureWindow.failures + 1),
            "started": case((passed, now), else_=AuthFailureWindow.started),
        },
    ).returning(AuthFailureWindow.address, AuthFailureWindow.failures, AuthFailureWindow.started)
    rows = await session.execute(upsert)
    return {row.address: FailureCount(row.failures, row.started) for row in rows}
