"""Liveness, readiness (the database answers, its schema at head) and Prometheus metrics."""

from __future__ import annotations

import asyncio
import logging

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from service.store import SchemaState, current_revisions, head_revision
from service.web.errors import error_response
from service.web.state import State

log = logging.getLogger(__name__)

READY_TIMEOUT_SECONDS = 5.0
"""A readiness probe gives up on the database after this, rather than hang with it."""
DATABASE_NOT_REACHABLE = "the database cannot be reached"
DATABASE_SLOW = f"the database did not answer within {READY_TIMEOUT_SECONDS:g} s"


async def healthz(_request: Request[State]) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request[State]) -> Response:
    try:
        async with asyncio.timeout(READY_TIMEOUT_SECONDS):
            async with request.state["readers"]() as session:
                current = await current_revisions(await session.connection())
    except TimeoutError:
        log.warning("not ready: the database did not answer within %g s", READY_TIMEOUT_SECONDS)
        return error_response(503, "unavailable", DATABASE_SLOW)
    except Exception as exc:  # any driver error means "not ready", never a 500
        # The reason goes to the log, once per probe; the answer says it in words.
        log.warning("not ready: %s: %s", type(exc).__name__, " ".join(str(exc).split())[:300])
        return error_response(503, "unavailable", DATABASE_NOT_REACHABLE)
    problem = SchemaState(current, head_revision()).problem()
    if problem is not None:
        return error_response(503, "unavailable", problem)
    return JSONResponse({"status": "ready"})


async def metrics(_request: Request[State]) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
