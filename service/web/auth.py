"""Bearer-token check for `/api/` and the dashboard (API_TOKENS; none configured: all refused)."""

from __future__ import annotations

import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

from service.web.errors import error_response

NO_TOKENS = "API_TOKENS is not set: the API refuses every request"
BAD_TOKEN = "send Authorization: Bearer <one of API_TOKENS>"


class BearerAuth:
    """Pure ASGI middleware, so it adds nothing to the webhook hot path it is not mounted on."""

    def __init__(self, app: ASGIApp, *, tokens: list[str]) -> None:
        self.app = app
        self._tokens = [t.encode() for t in tokens if t]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        detail = self._refusal(scope)
        if detail is None:
            await self.app(scope, receive, send)
            return
        response = error_response(
            401, "unauthorized", detail, headers={"WWW-Authenticate": "Bearer"}
        )
        await response(scope, receive, send)

    def _refusal(self, scope: Scope) -> str | None:
        if not self._tokens:
            return NO_TOKENS
        header = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
        scheme, _, given = header.partition(b" ")
        if scheme.lower() != b"bearer" or not given:
            return BAD_TOKEN
        matched = False
        for token in self._tokens:
            matched |= hmac.compare_digest(token, given.strip())
        return None if matched else BAD_TOKEN
