"""The simulator's HTTP face: the Visma.net API (`visma_api.py`), the `/_sim/` controls
(`control.py`, `chaos_http.py`), the request log and the middleware they run behind."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.simulator.chaos_http import ChaosMiddleware, chaos_routes
from service.simulator.compression import CompressAnswers
from service.simulator.config import SimulatorConfig
from service.simulator.control import CONTROL_PREFIX, control_routes
from service.simulator.jobs import BACKGROUND_HEADER
from service.simulator.state import RECORD_SCOPE_KEY, SimulatorState, request_kind
from service.simulator.visma_api import visma_routes


class _RequestLog:
    """ASGI middleware: log each Visma-facing request with the status it got."""

    def __init__(self, app: ASGIApp, *, simulator: SimulatorState) -> None:
        self.app = app
        self.simulator = simulator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The control plane is not part of what Visma saw, so it stays out of the log.
        if scope["type"] != "http" or scope["path"].startswith(CONTROL_PREFIX):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        record = self.simulator.log_request(
            scope["method"],
            scope["path"],
            scope.get("query_string", b"").decode("latin-1"),
            client=headers.get("user-agent"),
            kind=request_kind(scope["path"], background=BACKGROUND_HEADER in headers),
            tenant=self.simulator.tenant_for(headers.get("authorization")),
        )
        scope[RECORD_SCOPE_KEY] = record

        async def send_and_note_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                record.status = message["status"]
            await send(message)

        await self.app(scope, receive, send_and_note_status)


def create_simulator_app(
    config: SimulatorConfig, *, webhook_transport: httpx.AsyncBaseTransport | None = None
) -> Starlette:
    """A Starlette app that behaves like Visma.net; its state is `app.state.simulator`.

    The lifespan runs the webhook dispatcher; when the app is driven in-process (ASGITransport
    skips the lifespan) enter `app.router.lifespan_context(app)` to get webhooks.
    `webhook_transport` lets the dispatcher deliver in-process too (e.g. to the service's app).
    """
    simulator = SimulatorState(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        limits = httpx.Limits(max_connections=config.max_concurrent_deliveries)
        async with httpx.AsyncClient(
            timeout=config.webhook_timeout_seconds, limits=limits, transport=webhook_transport
        ) as client:
            await simulator.dispatcher.start(client)
            simulator.statuspage.attach(client)
            try:
                yield
            finally:
                simulator.statuspage.attach(None)
                await simulator.dispatcher.stop()
                simulator.close()

    app = Starlette(
        routes=[*visma_routes(simulator), *control_routes(simulator), *chaos_routes(simulator)],
        middleware=[
            Middleware(_RequestLog, simulator=simulator),
            # Inside the log, so refused and dropped requests are logged with what struck them.
            Middleware(ChaosMiddleware, simulator=simulator),
            Middleware(CompressAnswers),
        ],
        lifespan=lifespan,
    )
    app.state.simulator = simulator
    return app
