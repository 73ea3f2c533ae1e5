"""Routes the webhook hot path straight to its endpoint, ahead of Starlette's router.

A request that must wait for its commit suspends once; resuming it walks back through every
frame between uvicorn and the endpoint, and each response message passes through each
middleware's `send` wrapper. On `POST /webhooks/visma` those layers (exception middleware,
router, route) do nothing the endpoint needs, so this middleware, mounted just inside
Starlette's `ServerErrorMiddleware` (a crash still gets the JSON 500), hands that one route to
its endpoint directly. Every other request, including other methods on the same path, goes
through the router as before.

An exception the app maps to an answer (a database that refuses connections: 503) gets the
same answer here, from the same handlers. Like Starlette's, that only works before the
endpoint has started its response; the webhook endpoint sends its response last.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

RequestErrorHandler = Callable[[Request, Exception], Awaitable[Response]]
"""An app's exception handler for HTTP requests (the service's are all `async`)."""


class FastLane:
    """Pure ASGI middleware: `method path` goes to `endpoint`, everything else to `app`."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        method: str,
        path: str,
        endpoint: ASGIApp,
        exception_handlers: Mapping[type[Exception], RequestErrorHandler],
    ) -> None:
        self.app = app
        self._method = method
        self._path = path
        self._endpoint = endpoint
        # Exception itself is ServerErrorMiddleware's (the 500), as in Starlette.
        self._handlers = {k: v for k, v in exception_handlers.items() if k is not Exception}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not (
            scope["type"] == "http"
            and scope["method"] == self._method
            and _route_path(scope) == self._path
        ):
            await self.app(scope, receive, send)
            return
        try:
            await self._endpoint(scope, receive, send)
        except Exception as exc:
            handler = next(
                (self._handlers[c] for c in type(exc).__mro__ if c in self._handlers), None
            )
            if handler is None:
                raise
            response = await handler(Request(scope, receive), exc)
            await response(scope, receive, send)


def _route_path(scope: Scope) -> str:
    """The path the router matches: without the app's `root_path` prefix, if it has one."""
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    if root_path and path.startswith(root_path + "/"):
        return path[len(root_path) :]
    return path
