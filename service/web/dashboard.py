"""The dashboard at `/`: server-rendered pages for the people who run the service.

Jinja2 templates (autoescaped: every value from outside is escaped) and one small script of our
own (`static/dashboard.js`) that refreshes lists in place and copies ids; nothing is loaded from
elsewhere. Log in with an API token (`dashboard_login.py`, `dashboard_auth.py`; each session
is a row, `dashboard_sessions.py`, which logging out deletes); a read-only token sees
everything and changes nothing. The issues pages are `dashboard_issues.py`; what every page is
made with (templates, forms, refusals) is `dashboard_render.py`. Each page reads through
`store` in one reading transaction, as the API does.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from starlette.datastructures import URL
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response

from service import store
from service.domain import (
    ALERT_KINDS,
    MAX_PAGE_SIZE,
    OPEN_STATES,
    DomainError,
    InvalidInput,
    JobState,
    component_json,
    incident_json,
    iso,
    job_json,
    parse_event_filter,
    parse_job_query,
    result_json,
)
from service.flows import replay_delivery, signature_failures, utcnow
from service.web.dashboard_auth import csrf_matches
from service.web.dashboard_login import LOGIN_REFUSED as LOGIN_REFUSED
from service.web.dashboard_login import LOGOUT_REFUSED as LOGOUT_REFUSED
from service.web.dashboard_render import (
    CSRF_REFUSED,
    PAGE_SIZE,
    STATIC_DIR,
    default_company,
    read_form,
    refused,
    render_page,
    to_login,
)
from service.web.dashboard_sessions import (
    current_session,
)
from service.web.errors import STATUS_BY_ERROR
from service.web.schemas import alert_json, delivery_detail_json
from service.web.state import State

SILENT_AFTER_SECONDS = 3600
"""The health panel calls webhooks silent when none arrived for this long."""
READ_ONLY = "This token may only read (API_READ_TOKENS): replaying needs one of API_TOKENS."

_OPEN = tuple(sorted(s.value for s in OPEN_STATES))


# Pages


async def overview(request: Request[State]) -> Response:
    session = await current_session(request)
    if session is None:
        return to_login(request)
    health = await _health(request)
    return render_page(request, "overview.html", session, partial="_health.html", health=health)


async def jobs_page(request: Request[State]) -> Response:
    session = await current_session(request)
    if session is None:
        return to_login(request)
    params = request.query_params
    state_filter = params.get("state", "")
    tag = params.get("tag", "").strip()
    search = params.get("q", "").strip()[:200]
    problem = None
    query: list[tuple[str, str]] = [("pageSize", str(PAGE_SIZE))]
    if state_filter:
        query.append(("state", state_filter))
    company = params.get("company", "").strip()
    if company:
        query.append(("tenant", company))
    if tag:
        key, _, value = tag.partition("=")
        query.append((f"tag.{key.strip()}", value.strip()))
    jobs: list[dict[str, Any]] = []
    total = 0
    default_tenant = default_company(request)
    try:
        job_filter, page = parse_job_query(query)
    except DomainError as exc:
        problem = exc.detail
    else:
        async with request.state["readers"].begin() as db:
            if search:
                found = await _search(db, search)
                rows = [
                    job
                    for job in found
                    if (not job_filter.states or job.state in job_filter.states)
                    and (
                        not job_filter.tenants
                        or (job.tenant or default_tenant) in job_filter.tenants
                    )
                    and all(job.tags.get(k) == v for k, v in job_filter.tags.items())
                ]
                total = len(rows)
            else:
                rows_seq, total = await store.list_jobs(
                    db,
                    states=job_filter.states,
                    visma_job_id=None,
                    tags=job_filter.tags,
                    last_modified=None,
                    created=None,
                    tenants=job_filter.tenants,
                    default_tenant=default_tenant,
                    limit=page.size,
                    offset=0,
                )
                rows = list(rows_seq)
        jobs = [job_json(job, default_tenant=default_tenant) for job in rows]
    return render_page(
        request,
        "jobs.html",
        session,
        partial="_jobs.html",
        jobs=jobs,
        total=total,
        states=[s.value for s in JobState],
        companies=_companies(request),
        filters={
            "state": state_filter,
            "tag": tag,
            "q": search,
            "company": params.get("company", ""),
        },
        problem=problem,
    )


async def _search(db: Any, text: str) -> list[store.Job]:
    """Jobs whose id or Visma job id is `text`."""
    found: list[store.Job] = []
    if "\x00" not in text:
        job = await store.get_job(db, text)
        if job is not None:
            found.append(job)
        by_visma, _ = await store.list_jobs(
            db,
            states=(),
            visma_job_id=text,
            tags={},
            last_modified=None,
            created=None,
            limit=10,
            offset=0,
        )
        found += [j for j in by_visma if j.id not in {f.id for f in found}]
    return found


async def job_page(request: Request[State]) -> Response:
    session = await current_session(request)
    if session is None:
        return to_login(request)
    job_id = request.path_params["job_id"]
    async with request.state["readers"].begin() as db:
        job = await store.get_job(db, job_id) if "\x00" not in job_id else None
        events = await store.job_events(db, job_id) if job is not None else []
    if job is None:
        response = render_page(request, "missing.html", session, what=f"job {job_id}")
        response.status_code = 404
        return response
    data = job_json(job, events, default_tenant=default_company(request))
    request_body = job.request_body.decode("utf-8", errors="replace") if job.request_body else None
    return render_page(
        request,
        "job.html",
        session,
        job=data,
        request_body=request_body,
        kept_result=await _kept_result(request, job.id),
    )


async def favicon(_request: Request[State]) -> Response:
    """`/favicon.ico`: the dashboard's icon (an SVG; browsers ask this path on their own)."""
    return FileResponse(STATIC_DIR / "favicon.svg", media_type="image/svg+xml")


async def inbox_page(request: Request[State]) -> Response:
    session = await current_session(request)
    if session is None:
        return to_login(request)
    try:
        event = parse_event_filter(request.query_params.get("event"))
    except InvalidInput:
        event = None  # a filter no delivery can match: show them all rather than fail
    async with request.state["readers"].begin() as db:
        flagged, flagged_total = await store.list_deliveries(
            db, has_problem=True, event=event, limit=PAGE_SIZE, offset=0
        )
        recent, recent_total = await store.list_deliveries(
            db, has_problem=False, event=event, limit=PAGE_SIZE, offset=0
        )
        shown = [d.id for d in (*flagged, *recent)]
        forwards = await store.delivery_forwards(db, shown)
        attempts = await store.delivery_attempts(db, [f.id for fs in forwards.values() for f in fs])
    return render_page(
        request,
        "inbox.html",
        session,
        partial="_inbox.html",
        flagged=[delivery_detail_json(d, forwards.get(d.id, []), attempts) for d in flagged],
        flagged_total=flagged_total,
        recent=[delivery_detail_json(d, forwards.get(d.id, []), attempts) for d in recent],
        recent_total=recent_total,
        event=event or "",
        refresh=str(
            URL("/inbox").include_query_params(partial=1, **({"event": event} if event else {}))
        ),
        message=request.query_params.get("message"),
    )


async def replay_from_inbox(request: Request[State]) -> Response:
    session = await current_session(request)
    if session is None:
        return to_login(request)
    form = await read_form(request)
    token = form.get("csrf")
    if not csrf_matches(session, token):
        return refused(request, session, 403, CSRF_REFUSED)
    if not session.may_write:
        return refused(request, session, 403, READ_ONLY)
    delivery_id = request.path_params["delivery_id"]
    try:
        message = await _replay(request, delivery_id)
    except DomainError as exc:
        status = next((c for cls, c in STATUS_BY_ERROR.items() if isinstance(exc, cls)), 400)
        return refused(request, session, status, exc.detail)
    return RedirectResponse(
        str(URL("/inbox").include_query_params(message=message)), status_code=303
    )


async def status_page(request: Request[State]) -> Response:
    session = await current_session(request)
    if session is None:
        return to_login(request)
    async with request.state["readers"].begin() as db:
        components, _ = await store.list_components(
            db, statuses=(), component=None, limit=MAX_PAGE_SIZE, offset=0
        )
        incidents, _ = await store.list_incidents(
            db, statuses=(), component=None, limit=PAGE_SIZE, offset=0
        )
        updates = await store.incident_updates(db, [i.id for i in incidents])
    return render_page(
        request,
        "status.html",
        session,
        components=[component_json(c, None) for c in components],
        incidents=[incident_json(i, updates[i.id]) for i in incidents],
    )


async def alerts_page(request: Request[State]) -> Response:
    session = await current_session(request)
    if session is None:
        return to_login(request)
    kind = request.query_params.get("kind", "")
    kinds = (kind,) if kind in ALERT_KINDS else ()
    async with request.state["readers"].begin() as db:
        alerts, total = await store.list_alerts(db, kinds=kinds, limit=PAGE_SIZE, offset=0)
        deliveries = await store.alert_deliveries(db, [a.id for a in alerts])
        attempts = await store.delivery_attempts(
            db, [d.id for ds in deliveries.values() for d in ds]
        )
    now = utcnow()
    return render_page(
        request,
        "alerts.html",
        session,
        partial="_alerts.html",
        alerts=[alert_json(a, deliveries[a.id], attempts, now=now) for a in alerts],
        total=total,
        kinds=sorted(ALERT_KINDS),
        kind=kind if kinds else "",
    )


# The health panel


async def _health(request: Request[State]) -> dict[str, Any]:
    now = utcnow()
    async with request.state["readers"].begin() as db:
        counted = await store.figures(db, now=now, open_states=_OPEN)
        activity = await store.webhook_activity(db, since=now - timedelta(hours=1))
        silent = await _silent_alerts(db, now=now)
        signatures = await signature_failures(db, now=now, policy=request.state["alert_policy"])
    last = activity.last_at
    oldest = counted.outbox_oldest
    return {
        "now": iso(now),
        "webhooks": {
            "lastAt": iso(last),
            "lastAgeSeconds": None if last is None else round((now - last).total_seconds()),
            "lastHour": activity.since_count,
            "silent": last is None or (now - last).total_seconds() > SILENT_AFTER_SECONDS,
            "silentCompanies": silent,
        },
        "signatureFailures": signatures.as_json(),
        "pollBacklog": counted.poll_backlog,
        "jobsByState": counted.jobs_by_state,
        "outbox": {
            "depth": counted.outbox_depth,
            "oldestAgeSeconds": None if oldest is None else round((now - oldest).total_seconds()),
        },
        "rateBudgets": _rate_budgets(request),
    }


async def _silent_alerts(db: Any, *, now: datetime) -> list[dict[str, Any]]:
    """`webhooks.silent` alerts of the last day: the companies whose webhooks stopped."""
    alerts, _ = await store.list_alerts(db, kinds=("webhooks.silent",), limit=20, offset=0)
    day_ago = now - timedelta(days=1)
    return [
        {"subject": a.subject, "summary": a.summary, "at": iso(a.at)}
        for a in alerts
        if a.raised_at >= day_ago
    ]


# What other work brings (kept isolated so it is wired in one place each)


def _companies(request: Request[State]) -> list[str]:
    """Companies to filter the job list by (VISMA_TENANT_ID); none when there is only one."""
    tenants = request.state["settings"].tenant_ids
    return tenants if len(tenants) > 1 else []


def _rate_budgets(request: Request[State]) -> list[dict[str, Any]]:
    """Each company's Visma rate budget as this process last heard it (nulls until Visma has
    answered for that company)."""
    return [
        {"company": budget.tenant, **budget.as_json()}
        for budget in request.state["visma"].budget_snapshot()
    ]


async def _kept_result(request: Request[State], job_id: str) -> dict[str, Any] | None:
    """What the finished request returned, kept past Visma's 24 h (None: nothing kept)."""
    async with request.state["readers"].begin() as db:
        result = await store.get_result(db, job_id)
    return None if result is None else result_json(result)


async def _replay(request: Request[State], delivery_id: str) -> str:
    """Replay one stored delivery (as `POST /api/v1/deliveries/{id}/replay` does); what to
    tell the operator."""
    state = request.state
    replayed = await replay_delivery(
        state["sessions"],
        state["visma"],
        delivery_id,
        settings=state["resolve_settings"],
        source="dashboard",
    )
    if replayed.job_id is None:
        return f"Replayed delivery {replayed.delivery_id}: it names no job it may be linked to."
    read = "; its state was read again" if replayed.state_read else ""
    return f"Replayed delivery {replayed.delivery_id} for job {replayed.job_id}{read}."
