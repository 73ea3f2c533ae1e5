"""The dashboard's sessions (`dashboard_sessions`), one row per login. Functions take a session
and never commit; retention's batch of them is in `store/retention.py` with the others."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from service.store.models import DashboardSession


async def add_dashboard_session(
    session: AsyncSession,
    *,
    row_id: str,
    token_fingerprint: str,
    now: datetime,
    expires_at: datetime,
    max_sessions: int,
) -> int:
    """Store a new login. Past `max_sessions` live ones, the oldest are removed (their people
    log in again), so logins cannot grow the table without bound; how many were removed."""
    session.add(
        DashboardSession(
            id=row_id, token_fingerprint=token_fingerprint, created_at=now, expires_at=expires_at
        )
    )
    await session.flush()
    live = DashboardSession.expires_at > now
    count = int(await session.scalar(select(func.count()).where(live)) or 0)
    if count <= max_sessions:
        return 0
    oldest = (
        select(DashboardSession.id)
        .where(live, DashboardSession.id != row_id)
        .order_by(DashboardSession.expires_at)
        .limit(count - max_sessions)
    )
    ids = list((await session.execute(oldest)).scalars())
    await session.execute(delete(DashboardSession).where(DashboardSession.id.in_(ids)))
    return len(ids)


async def dashboard_session_fingerprint(
    session: AsyncSession, row_id: str, *, now: datetime
) -> str | None:
    """The token fingerprint of a live session (one primary-key read); None when it was logged
    out, has expired, or never was."""
    found = await session.scalar(
        select(DashboardSession.token_fingerprint).where(
            DashboardSession.id == row_id, DashboardSession.expires_at > now
        )
    )
    return None if found is None else str(found)


async def remove_dashboard_session(session: AsyncSession, row_id: str) -> bool:
    """End a session (logging out); whether it was there."""
    result = await session.execute(delete(DashboardSession).where(DashboardSession.id == row_id))
    return bool(getattr(result, "rowcount", 0))
