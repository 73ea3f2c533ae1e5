"""Chaos over HTTP: faults answered in front of the ERP API, lost 202s, and `/_sim/chaos`."""

from __future__ import annotations

import asyncio
import contextlib
import json

import httpx
from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.simulator.chaos import RequestFault
from service.simulator.outcomes import JSON_CONTENT_TYPE, dump_json, ipp_exception, is_erp_path
from service.simulator.state import RECORD_SCOPE_KEY, RequestRecord, SimulatorState

# The messages and fault codes of these bodies are guesses: Visma documents the 429 headers,
# not its bodies, and a 5xx may not even come from the ERP itself.
RATE_LIMITED_MESSAGE = "API rate limit exceeded. Retry after the time in Retry-After."
SERVER_ERROR_MESSAGE = "The service is temporarily unavailable."
_DROP_KEY = "visma_simulator.drop_response"
_DISCONNECT_WAIT_SECONDS = 1.0


def drop_response(scope: Scope) -> None:
    """Ask `ChaosMiddleware` to close this request's connection instead of answering it."""
    scope[_DROP_KEY] = True


def _note(scope: Scope, chaos: str) -> None:
    record = scope.get(RECORD_SCOPE_KEY)
    if isinstance(record, RequestRecord):
        record.chaos = chaos


def fault_response(fault: RequestFault) -> Response:
    """The answer for a request refused on purpose: 429 or 503 with an IPPException body."""
    if fault.status == 429:
        body = ipp_exception(RATE_LIMITED_MESSAGE, "429")
    else:
        body = ipp_exception(SERVER_ERROR_MESSAGE, str(fault.status))
    return Response(
        dump_json(body),
        status_code=fault.status,
        headers=fault.headers,
        media_type=JSON_CONTENT_TYPE,
    )


class ChaosMiddleware:
    """ASGI middleware: refuse ERP API requests on purpose, add X-RateLimit-*, lose 202s.

    Sits inside the request log, so refused and dropped requests are logged too.
    """

    def __init__(self, app: ASGIApp, *, simulator: SimulatorState) -> None:
        self.app = app
        self.simulator = simulator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_erp_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        chaos = self.simulator.chaos
        tenant = self.simulator.tenant_for(Headers(scope=scope).get("authorization"))
        # Decided before routing: a refused background call consumes no outcome, makes no job.
        fault = chaos.admit_request(tenant)
        if fault is not None:
            _note(scope, fault.reason)
            await fault_response(fault)(scope, receive, send)
            return
        limit_headers = chaos.rate_limit_headers(tenant)

        async def send_or_swallow(message: Message) -> None:
            if scope.get(_DROP_KEY):
                return  # the answer is "lost": nothing of it reaches the socket
            if message["type"] == "http.response.start" and limit_headers:
                headers = MutableHeaders(scope=message)
                for name, value in limit_headers.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_or_swallow)
        if scope.get(_DROP_KEY):
            _note(scope, "accept_dropped")
            await _close_without_answer(receive)


async def _close_without_answer(receive: Receive) -> None:
    # ASGI has no message for "close the connection without answering". Under uvicorn,
    # `receive` is a method of the request cycle, which holds the socket's transport: abort it
    # and wait for uvicorn to see the disconnect, so it neither logs an error nor sends a 500.
    # uvloop's transports are not asyncio.Transport subclasses, so look for `abort` itself.
    transport = getattr(getattr(receive, "__self__", None), "transport", None)
    abort = getattr(transport, "abort", None)
    if not callable(abort):
        # In process (httpx.ASGITransport) this exception reaches the client, which is what an
        # httpx client on a socket would raise. Other servers would answer 500 instead.
        raise httpx.RemoteProtocolError("the simulator closed the connection without answering")
    abort()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(_DISCONNECT_WAIT_SECONDS):
            while (await receive())["type"] != "http.disconnect":
                pass


class _ChaosEndpoints:
    def __init__(self, simulator: SimulatorState) -> None:
        self.sim = simulator

    async def read_chaos(self, request: Request) -> Response:
        """`GET /_sim/chaos`: the chaos settings in force."""
        return JSONResponse(self.sim.config.chaos())

    async def update_chaos(self, request: Request) -> Response:
        """`PUT /_sim/chaos`: change any chaos fields (a JSON object); answers the new settings."""
        try:
            settings = self.sim.update_chaos(json.loads(await request.body()))
        except ValueError as exc:  # json.JSONDecodeError is a ValueError too
            return JSONResponse({"error": "invalid_request", "detail": str(exc)}, status_code=400)
        return JSONResponse(settings)

    async def reset_chaos(self, request: Request) -> Response:
        """`DELETE /_sim/chaos`: every chaos mode off (the seed stays); answers the settings."""
        return JSONResponse(self.sim.reset_chaos())


def chaos_routes(simulator: SimulatorState) -> list[BaseRoute]:
    """The `/_sim/chaos` control routes."""
    endpoints = _ChaosEndpoints(simulator)
    return [
        Route("/_sim/chaos", endpoints.read_chaos, methods=["GET"], name="read_chaos"),
        Route("/_sim/chaos", endpoints.update_chaos, methods=["PUT"], name="update_chaos"),
        Route("/_sim/chaos", endpoints.reset_chaos, methods=["DELETE"], name="reset_chaos"),
    ]
