"""Bearer-token check for `/api/` and the dashboard.

A client address that sent too many wrong tokens is held back (429, `web/throttle.py`) before
its token is even compared.

API_TOKENS may read and write; API_READ_TOKENS may only read (none configured: all refused).
The middleware puts the token's role in the ASGI scope the way Starlette's authentication does
(`scope["auth"]` holds `AuthCredentials` with the scopes `read`, or `read` and `write`), so a
handler calls `require_write(request)`, and any other front end (a dashboard that logs in with a
token) grants the same scopes and reuses the same check, or Starlette's `@requires("write")`.
"""

from __future__ import annotations

import hmac
from typing import Any

from starlette.authentication import AuthCredentials
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from service.web.errors import error_response
from service.web.throttle import AuthThrottle

READ = "read"
WRITE = "write"
READ_SCOPES = (READ,)
WRITE_SCOPES = (READ, WRITE)

NO_TOKENS = "API_TOKENS and API_READ_TOKENS are not set: the API refuses every request"
BAD_TOKEN = "send Authorization: Bearer <one of API_TOKENS or API_READ_TOKENS>"
HELD_BACK = (
    "too many wrong tokens from this address (AUTH_FAILURES_PER_MINUTE); try again after "
    "Retry-After seconds"
)
READ_ONLY = (
    "this token may only read (API_READ_TOKENS): submitting, resending or replaying needs one "
    "of API_TOKENS"
)


class BearerAuth:
    """Pure ASGI middleware, so it adds nothing to the webhook hot path it is not mounted on."""

    def __init__(
        self, app: ASGIApp, *, tokens: list[str], read_tokens: list[str] | None = None
    ) -> None:
        self.app = app
        self._tokens = [(t.encode(), WRITE_SCOPES) for t in tokens if t] + [
            (t.encode(), READ_SCOPES) for t in read_tokens or [] if t
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = self._given(scope)
        throttle: AuthThrottle | None = scope.get("state", {}).get("auth_throttle")
        address = throttle.address_of(scope) if throttle and given else None
        if throttle and address is not None:
            held = await throttle.held_back(address)
            if held is not None:
                retry = str(held.retry_after_seconds)
                response = error_response(
                    429, "too_many_requests", HELD_BACK, headers={"Retry-After": retry}
                )
                await response(scope, receive, send)
                return
        granted = self._scopes(given)
        if isinstance(granted, tuple):
            if throttle and address is not None:
                throttle.passed(address)
            scope["auth"] = AuthCredentials(list(granted))
            await self.app(scope, receive, send)
            return
        if throttle and address is not None and self._tokens:
            await throttle.failed(address, where="api")
        response = error_response(
            401, "unauthorized", granted, headers={"WWW-Authenticate": "Bearer"}
        )
        await response(scope, receive, send)

    @staticmethod
    def _given(scope: Scope) -> bytes:
        """The bearer token the request carries; empty when it carries none (no guess)."""
        header = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
        scheme, _, given = header.partition(b" ")
        return given.strip() if scheme.lower() == b"bearer" else b""

    def _scopes(self, given: bytes) -> tuple[str, ...] | str:
        """The scopes the request's token grants, or why it is refused."""
        if not self._tokens:
            return NO_TOKENS
        if not given:
            return BAD_TOKEN
        granted: tuple[str, ...] | None = None
        for token, scopes in self._tokens:  # every token compared: no early exit to time
            if hmac.compare_digest(token, given) and granted is None:
                granted = scopes
        return BAD_TOKEN if granted is None else granted


def may_write(connection: HTTPConnection[Any]) -> bool:
    """Whether the request's credentials may change things (submit, resend, replay)."""
    credentials = connection.scope.get("auth")
    return isinstance(credentials, AuthCredentials) and WRITE in credentials.scopes


def require_write(connection: HTTPConnection[Any]) -> None:
    """403 (`forbidden`) unless the request's token may write."""
    if not may_write(connection):
        raise HTTPException(403, detail=READ_ONLY)
