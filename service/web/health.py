"""Liveness, database readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio
import logging

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from service.web.errors import error_response
from service.web.state import State

log = logging.getLogger(__name__)

READY_TIMEOUT_SECONDS = 5.0
"""A readiness probe gives up on the database after this, rather than hang with it."""
# `/readyz` is unauthenticated: it says what is wrong in words, never the driver's text (which
# names hosts, ports, users and files); the log has the rest.
DATABASE_UNREACHABLE = "the database cannot be reached or refused the connection"
DATABASE_SLOW = f"the database did not answer within {READY_TIMEOUT_SECONDS:g} s"


async def healthz(_request: Request[State]) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request[State]) -> Response:
    try:
        async with asyncio.timeout(READY_TIMEOUT_SECONDS):
            async with request.state["readers"]() as session:
                await session.execute(text("SELECT 1"))
    except TimeoutError:
        log.warning("readiness: the database did not answer in time")
        return error_response(503, "unavailable", DATABASE_SLOW)
    except Exception as exc:  # any driver error means "not ready", never a 500
        log.warning("readiness: the database is not reachable: %r", exc)
        return error_response(503, "unavailable", DATABASE_UNREACHABLE)
    return JSONResponse({"status": "ready"})


async def metrics(_request: Request[State]) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
