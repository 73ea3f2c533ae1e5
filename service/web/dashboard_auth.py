"""The dashboard's login: an API token typed into a form becomes a session.

The cookie holds a random session id and nothing else. The session's row
(`web/dashboard_sessions.py`) is keyed by a SHA-256 of that id and keeps a fingerprint of the
token (an HMAC of the id keyed with the token, never the token itself); each request checks the
fingerprint against this process's API_TOKENS and API_READ_TOKENS, so taking a token out of the
settings ends its sessions on every replica, and its role follows the list it is in now. The
cookie is HttpOnly and SameSite=Strict; every form that changes something (logging out too)
carries a CSRF token (an HMAC of the session id, keyed with the same token), checked on POST,
so another site can neither read nor forge one. This module holds the arithmetic only: no I/O.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from service.web.auth import READ, WRITE

COOKIE = "vh_session"
SESSION_SECONDS = 12 * 3600
_SESSION_ID_BYTES = 32
_SESSION_ID = re.compile(r"[A-Za-z0-9_-]{43}")
"""32 random bytes, base64url without padding: any other cookie is no session of ours."""


@dataclass(frozen=True)
class Session:
    role: str
    """`read` or `write`."""
    cookie: str
    csrf: str
    row_id: str
    """The key of the session's row (a hash of the cookie's id)."""

    @property
    def may_write(self) -> bool:
        return self.role == WRITE


@dataclass(frozen=True)
class NewSession:
    """A login the row of which is still to be stored."""

    session: Session
    token_fingerprint: str


class DashboardKeys:
    """The configured tokens and what each may do, for logging in and checking sessions."""

    def __init__(self, *, tokens: list[str], read_tokens: list[str]) -> None:
        self._keys = [(t.encode(), WRITE) for t in tokens if t] + [
            (t.encode(), READ) for t in read_tokens if t
        ]

    @property
    def configured(self) -> bool:
        return bool(self._keys)

    def log_in(self, given: str) -> NewSession | None:
        """A new session for a configured token, or None."""
        given_bytes = given.strip().encode()
        found: tuple[bytes, str] | None = None
        for key, role in self._keys:  # every token compared: no early exit to time
            if hmac.compare_digest(key, given_bytes) and found is None:
                found = (key, role)
        if found is None:
            return None
        key, role = found
        session_id = secrets.token_urlsafe(_SESSION_ID_BYTES)
        return NewSession(_session(key, role, session_id), _fingerprint(key, session_id))

    def session(self, cookie: str, *, token_fingerprint: str) -> Session | None:
        """The session of a cookie whose row holds `token_fingerprint`, or None when no
        configured token made it (the token was taken out of the settings)."""
        found: Session | None = None
        for key, role in self._keys:  # every token compared: no early exit to time
            matches = hmac.compare_digest(_fingerprint(key, cookie), token_fingerprint)
            if matches and found is None:
                found = _session(key, role, cookie)
        return found


def row_id_of(cookie: str | None) -> str | None:
    """The row key of the session a cookie names, or None for anything that is no session id."""
    if cookie is None or not _SESSION_ID.fullmatch(cookie):
        return None
    return hashlib.sha256(cookie.encode()).hexdigest()


def csrf_matches(session: Session, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(session.csrf, given)


def _mac(key: bytes, message: str) -> str:
    digest = hmac.new(key, message.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _fingerprint(key: bytes, session_id: str) -> str:
    # Keyed with the token and salted with the session's id: the stored value names the token
    # to a process that has it, and is no lookup key for the token to anyone else.
    return hmac.new(key, ("session:" + session_id).encode(), hashlib.sha256).hexdigest()


def _session(key: bytes, role: str, session_id: str) -> Session:
    return Session(
        role=role,
        cookie=session_id,
        csrf=_mac(key, "csrf:" + session_id),
        row_id=hashlib.sha256(session_id.encode()).hexdigest(),
    )
