"""Liveness, readiness (the database answers, its schema at head) and Prometheus metrics."""

from __future__ import annotations

import asyncio
import logging

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from service.domain import iso
from service.flows import utcnow
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
    return JSONResponse(
        {"status": "ready", "tables": _tables(request), "rateBudgets": _budgets(request)}
    )


def _budgets(request: Request[State]) -> list[dict[str, object]]:
    """Each company's Visma rate budget as this process last heard it (VismaClient's
    `budget_snapshot`; nulls until Visma has answered for that company)."""
    return [
        {"tenant": budget.tenant, **budget.as_json()}
        for budget in request.state["visma"].budget_snapshot()
    ]


def _tables(request: Request[State]) -> dict[str, object]:
    """The tables retention trims: rows and the oldest row's age, as housekeeping last measured
    them (the probe itself counts nothing: that would scan large tables on every probe)."""
    sizes, measured_at = request.state["table_sizes"]()
    now = utcnow()
    return {
        "measuredAt": iso(measured_at),
        "items": [
            {
                "table": size.table,
                "rows": size.rows,
                "rowsEstimated": size.estimated,
                "oldestAt": iso(size.oldest),
                "oldestAgeSeconds": (
                    None if size.oldest is None else round((now - size.oldest).total_seconds())
                ),
            }
            for size in sizes
        ],
    }


async def metrics(_request: Request[State]) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
