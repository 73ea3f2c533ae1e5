"""Routes the webhook hot path straight to its endpoint, ahead of Starlette's router.

A request that must wait for its commit suspends once; resuming it walks back through every
frame between uvicorn and the endpoint, and each response message passes through each
middleware's `send` wrapper. On `POST /webhooks/visma` those layers (exception middleware,
router, route) do nothing the endpoint needs: it answers its own errors. So this middleware,
mounted just inside Starlette's `ServerErrorMiddleware` (a crash still gets the JSON 500),
hands that one route to its endpoint directly. Every other request, including other methods
on the same path, goes through the router as before.
"""

from __future__ import annotations

from starlette._utils import get_route_path
from starlette.types import ASGIApp, Receive, Scope, Send


class FastLane:
    """Pure ASGI middleware: `method path` goes to `endpoint`, everything else to `app`."""

    def __init__(self, app: ASGIApp, *, method: str, path: str, endpoint: ASGIApp) -> None:
        self.app = app
        self._method = method
        self._path = path
        self._endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == self._method
            and get_route_path(scope) == self._path
        ):
            await self._endpoint(scope, receive, send)
        else:
            await self.app(scope, receive, send)
