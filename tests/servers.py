"""Real uvicorn servers on loopback for the end-to-end tests."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

import uvicorn
from starlette.types import ASGIApp

from service.server import DEFAULT_LIMITS, ServerLimits, server_config
from service.settings import Settings


def bind_loopback() -> socket.socket:
    """A listening socket on a free loopback port (bound first, so URLs are known up front)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@contextlib.asynccontextmanager
async def serving(
    app: ASGIApp, sock: socket.socket, *, settings: Settings | None = None
) -> AsyncIterator[str]:
    """Serve `app` on `sock` until the block ends, configured as `visma-hooks serve` is (with
    the request-head limits of `settings`, else the defaults)."""
    limits = ServerLimits.from_settings(settings) if settings else DEFAULT_LIMITS
    config = server_config(app, limits, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            await task
            raise RuntimeError("server stopped before it started")
        await asyncio.sleep(0.01)
    try:
        yield url_of(sock)
    finally:
        server.should_exit = True
        await task
