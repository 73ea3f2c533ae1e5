"""Liveness, database readiness and Prometheus metrics."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from service.web.errors import error_response
from service.web.state import State


async def healthz(_request: Request[State]) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request[State]) -> Response:
    try:
        async with request.state["readers"]() as session:
            await session.execute(text("SELECT 1"))
    except Exception as exc:  # any driver error means "not ready", never a 500
        return error_response(503, "unavailable", f"database is not reachable: {exc!r}"[:300])
    return JSONResponse({"status": "ready"})


async def metrics(_request: Request[State]) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
