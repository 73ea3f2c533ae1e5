"""The dashboard's sessions as rows: stored at login, read on each page, deleted at logout.

A page costs one primary-key read (`store.dashboard_session_fingerprint`) in a reading
transaction of its own; the token check after it is arithmetic (`dashboard_auth.py`). Expired
rows open nothing and go with retention's purge.
"""

from __future__ import annotations

from datetime import timedelta

from starlette.requests import Request

from service import store
from service.flows import utcnow
from service.web.dashboard_auth import (
    COOKIE,
    SESSION_SECONDS,
    DashboardKeys,
    NewSession,
    Session,
    row_id_of,
)
from service.web.state import State

MAX_SESSIONS = 10_000
"""Live sessions kept at most: past it a login removes the oldest, so the table stays small
whatever a token holder's script does."""


def dashboard_keys(request: Request[State]) -> DashboardKeys:
    settings = request.state["settings"]
    return DashboardKeys(tokens=settings.api_tokens(), read_tokens=settings.api_read_tokens())


async def current_session(request: Request[State]) -> Session | None:
    """The session the request's cookie opens, or None (none, logged out, expired, forged, or
    made with a token no longer configured)."""
    cookie = request.cookies.get(COOKIE)
    row_id = row_id_of(cookie)
    if cookie is None or row_id is None:
        return None
    async with request.state["readers"].begin() as db:
        fingerprint = await store.dashboard_session_fingerprint(db, row_id, now=utcnow())
    if fingerprint is None:
        return None
    return dashboard_keys(request).session(cookie, token_fingerprint=fingerprint)


async def start_session(request: Request[State], new: NewSession) -> None:
    """Store a login's row; its cookie opens pages from the commit on."""
    now = utcnow()
    async with request.state["sessions"].begin() as db:
        await store.add_dashboard_session(
            db,
            row_id=new.session.row_id,
            token_fingerprint=new.token_fingerprint,
            now=now,
            expires_at=now + timedelta(seconds=SESSION_SECONDS),
            max_sessions=MAX_SESSIONS,
        )


async def end_session(request: Request[State], session: Session) -> None:
    """Log a session out: its cookie opens nothing from the commit on, on every replica."""
    async with request.state["sessions"].begin() as db:
        await store.remove_dashboard_session(db, session.row_id)
