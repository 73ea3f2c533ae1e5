"""The dashboard's login: an API token typed into a form becomes a signed session cookie.

The cookie holds no token: `<role>.<expires>.<mac>`, the mac being an HMAC of the role and
expiry keyed with the token itself. Any replica checks it against its own API_TOKENS and
API_READ_TOKENS (no session store, no extra secret), and taking a token out of the settings
ends its sessions. The cookie is HttpOnly and SameSite=Strict; every form that changes
something also carries a CSRF token (an HMAC of the session, keyed with the same token), checked
on POST, so another site can neither read nor forge one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass

from service.web.auth import READ, WRITE

COOKIE = "vh_session"
SESSION_SECONDS = 12 * 3600
_MAX_COOKIE_CHARS = 200


@dataclass(frozen=True)
class Session:
    role: str
    """`read` or `write`."""
    cookie: str
    csrf: str

    @property
    def may_write(self) -> bool:
        return self.role == WRITE


class DashboardKeys:
    """The configured tokens and what each may do, for logging in and checking sessions."""

    def __init__(self, *, tokens: list[str], read_tokens: list[str]) -> None:
        self._keys = [(t.encode(), WRITE) for t in tokens if t] + [
            (t.encode(), READ) for t in read_tokens if t
        ]

    @property
    def configured(self) -> bool:
        return bool(self._keys)

    def log_in(self, given: str, *, now: float | None = None) -> Session | None:
        """A new session for a configured token, or None."""
        given_bytes = given.strip().encode()
        found: tuple[bytes, str] | None = None
        for key, role in self._keys:  # every token compared: no early exit to time
            if hmac.compare_digest(key, given_bytes) and found is None:
                found = (key, role)
        if found is None:
            return None
        expires = int((now or time.time()) + SESSION_SECONDS)
        key, role = found
        return _session(key, role, expires)

    def session(self, cookie: str | None, *, now: float | None = None) -> Session | None:
        """The session a cookie proves, or None (missing, forged, expired, token withdrawn)."""
        if not cookie or len(cookie) > _MAX_COOKIE_CHARS:
            return None
        role, _, rest = cookie.partition(".")
        expires_text, _, _mac = rest.partition(".")
        if role not in (READ, WRITE) or not expires_text.isdigit():
            return None
        expires = int(expires_text)
        if expires < (now or time.time()):
            return None
        found: Session | None = None
        for key, key_role in self._keys:
            candidate = _session(key, key_role, expires)
            if hmac.compare_digest(candidate.cookie, cookie) and found is None:
                found = candidate
        return found


def csrf_matches(session: Session, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(session.csrf, given)


def _mac(key: bytes, message: str) -> str:
    digest = hmac.new(key, message.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _session(key: bytes, role: str, expires: int) -> Session:
    value = f"{role}.{expires}"
    return Session(
        role=role,
        cookie=f"{value}.{_mac(key, 'session:' + value)}",
        csrf=_mac(key, "csrf:" + value),
    )
