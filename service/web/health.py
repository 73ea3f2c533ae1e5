"""Liveness, readiness (the database answers, its schema at head) and Prometheus metrics."""

from __future__ import annotations

import asyncio
import logging

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from service import metrics as service_metrics
from service.domain import OPEN_STATES, iso
from service.flows import utcnow
from service.logs import reason
from service.store import SchemaState, current_revisions, figures, head_revision
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


_OPEN_STATES = tuple(sorted(state.value for state in OPEN_STATES))


async def metrics(request: Request[State]) -> Response:
    """Every worker's counters, and the database's figures as of this scrape (left out, with a
    log line, when the database does not answer in time)."""
    database = await _database_figures(request)
    return Response(service_metrics.render(database), media_type=service_metrics.CONTENT_TYPE)


async def _database_figures(request: Request[State]) -> service_metrics.DatabaseFigures | None:
    now = utcnow()
    try:
        async with asyncio.timeout(READY_TIMEOUT_SECONDS):
            async with request.state["readers"]() as session:
                counted = await figures(session, now=now, open_states=_OPEN_STATES)
    except Exception as exc:  # the process's own metrics still go out
        log.warning("metrics: the database figures are left out: %s", reason(exc))
        return None
    default = request.state["settings"].default_tenant or ""
    # Open jobs per company (few, and indexed by state); finished ones over all companies from
    # the count table (`company=""`): counting a million finished jobs per company would scan
    # them on every scrape.
    jobs: dict[tuple[str, str], float] = {
        (state, ""): count
        for state, count in counted.jobs_by_state.items()
        if state not in _OPEN_STATES
    }
    for (state, tenant), count in counted.open_jobs.items():
        key = (state, tenant or default)
        jobs[key] = jobs.get(key, 0) + count
    sizes, _measured_at = request.state["table_sizes"]()
    oldest = counted.outbox_oldest
    budgets: dict[str, tuple[float | None, float | None, float | None]] = {
        budget.tenant: (budget.limit, budget.remaining, budget.reset_seconds)
        for budget in request.state["visma"].budget_snapshot()
    }
    return service_metrics.DatabaseFigures(
        jobs=jobs,
        poll_backlog=counted.poll_backlog,
        outbox_depth=counted.outbox_depth,
        outbox_oldest_age_seconds=0 if oldest is None else (now - oldest).total_seconds(),
        table_rows={size.table: size.rows for size in sizes},
        table_oldest_age_seconds={
            size.table: (now - size.oldest).total_seconds()
            for size in sizes
            if size.oldest is not None
        },
        rate_budgets=budgets,
    )
