"""The HTTP server: uvicorn, with limits on what a client may send before its request runs
(`http_guard.py`: the connection protocol that holds clients to them, and why uvicorn needs it).

`visma-hooks serve` and the tests' servers both build their configuration with `server_config`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.supervisors import Multiprocess

from service.http_guard import DEFAULT_LIMITS, GuardedHttpToolsProtocol, ServerLimits
from service.metrics import MULTIPROC_ENV
from service.settings import Settings

__all__ = [
    "APP",
    "DEFAULT_LIMITS",
    "GuardedHttpToolsProtocol",
    "ServerLimits",
    "ServiceConfig",
    "metrics_directory",
    "run_server",
    "server_config",
]

log = logging.getLogger(__name__)

APP = "service.app:create_served_app"
FD_HEADROOM = 64
"""File descriptors kept free of client connections: database pool, SQLite writer, logs, the
listening socket."""


class ServiceConfig(uvicorn.Config):
    """uvicorn's configuration plus the limits (each worker process gets a pickled copy)."""

    def __init__(self, app: Any, *, limits: ServerLimits, **options: Any) -> None:
        self.limits = limits
        super().__init__(app, **options)


def server_config(app: Any, limits: ServerLimits, **options: Any) -> ServiceConfig:
    """The uvicorn configuration every server of the service runs with; `options` go to uvicorn
    (host, port, workers, TLS files, log level...)."""
    return ServiceConfig(
        app,
        limits=_within_open_files(limits),
        http=GuardedHttpToolsProtocol,
        # No route speaks WebSocket; an upgraded connection would leave the head limits behind.
        ws="none",
        # X-Forwarded-For is judged by TRUSTED_PROXIES in the application, not by uvicorn.
        proxy_headers=False,
        access_log=False,
        **options,
    )


def run_server(
    settings: Settings,
    *,
    host: str,
    port: int,
    workers: int = 1,
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
    log_level: str | None = None,
) -> int:
    """Serve the application until interrupted (what `visma-hooks serve` does); the exit code."""
    config = server_config(
        APP,
        ServerLimits.from_settings(settings),
        factory=True,
        host=host,
        port=port,
        workers=workers,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
        log_level=log_level,
        # `serve` configured logging (service/logs.py): uvicorn's lines go through it too.
        log_config=None,
    )
    server = uvicorn.Server(config)
    try:
        if config.workers > 1:
            with metrics_directory():
                Multiprocess(config, sockets=[config.bind_socket()]).run()
            return 0
        server.run()
    except KeyboardInterrupt:
        return 0
    return 0 if server.started else 1


@contextlib.contextmanager
def metrics_directory() -> Iterator[Path]:
    """Where the worker processes keep their metrics so that any one's /metrics sums them all
    (prometheus-client's multiprocess mode): PROMETHEUS_MULTIPROC_DIR, emptied now (files of an
    earlier run would add to this one's counts), else a directory of our own for this run.
    Set before the workers start: each reads it when it imports prometheus-client."""
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="visma-hooks-metrics-") as made:
        os.environ[MULTIPROC_ENV] = made
        try:
            yield Path(made)
        finally:
            os.environ.pop(MULTIPROC_ENV, None)


def _within_open_files(limits: ServerLimits) -> ServerLimits:
    """MAX_CONNECTIONS, lowered to what the process's open-file limit allows: past that limit
    accept() fails and nobody, not even a health check, gets in."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or limits.max_connections <= soft - FD_HEADROOM:
        return limits
    allowed = max(soft - FD_HEADROOM, 1)
    log.warning(
        "MAX_CONNECTIONS=%d is above what the open-file limit (%d) allows; using %d",
        limits.max_connections,
        soft,
        allowed,
    )
    return replace(limits, max_connections=allowed)
