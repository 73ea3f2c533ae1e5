"""The dashboard's issues: the list, an issue with its jobs, a person's moves (acknowledge,
resolve, ignore) and a resend, counted first (the dry run) and then followed on the operation's
page, which refreshes in place through `static/dashboard.js` (no script of its own: the
Content-Security-Policy allows none inline).

Forms post here with the page's CSRF token, and only a write token may post, as the inbox's
replay does (`dashboard.py`, whose helpers these pages share).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from starlette.datastructures import URL
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from service import store
from service.domain import (
    ISSUE_STATES,
    MAX_PREVIEW_JOBS,
    UNFINISHED,
    DomainError,
    IssueAction,
    IssueState,
    allowed_actions,
    decode_id,
    issue_json,
    job_json,
    operation_json,
)
from service.flows import change_issue, preview_resend, start_resend
from service.web.dashboard_auth import Session, csrf_matches
from service.web.dashboard_render import (
    CSRF_REFUSED,
    PAGE_SIZE,
    default_company,
    read_form,
    refused,
    render_page,
    to_login,
)
from service.web.dashboard_sessions import current_session
from service.web.errors import STATUS_BY_ERROR
from service.web.state import State

DEFAULT_STATES = (IssueState.OPEN.value, IssueState.ACKNOWLEDGED.value)
"""The issues list shows these unless asked for another state: what still needs a person."""
ANY_STATE = "any"
MAX_PAGE_NUMBER = 10_000
UNKNOWN_STATE = "Unknown state {state!r}: use one of {states}, or any."
WRITE_NEEDED = "This token may only read (API_READ_TOKENS): {what} needs one of API_TOKENS."
MOVED = {
    IssueAction.ACKNOWLEDGE: "Acknowledged.",
    IssueAction.RESOLVE: "Resolved.",
    IssueAction.IGNORE: "Ignored.",
}


async def issues_page(request: Request[State]) -> Response:
    session = await current_session(request)
    if session is None:
        return to_login(request)
    state = request.query_params.get("state", "")[:40]
    number = _page_number(request)
    problem = None
    if state == ANY_STATE:
        states: tuple[str, ...] = ()
    elif not state:
        states = DEFAULT_STATES
    elif state in ISSUE_STATES:
        states = (state,)
    else:
        problem = UNKNOWN_STATE.format(state=state, states=", ".join(sorted(ISSUE_STATES)))
        states = DEFAULT_STATES
    async with request.state["readers"].begin() as db:
        rows, total = await store.list_issues(
            db, states=states, limit=PAGE_SIZE, offset=(number - 1) * PAGE_SIZE
        )
        incidents = await store.incidents_by_id(db, [i.incident_id or "" for i in rows])
    issues = [issue_json(i, incident=incidents.get(i.incident_id or "")) for i in rows]
    return render_page(
        request,
        "issues.html",
        session,
        partial="_issues.html",
        issues=issues,
        total=total,
        paging=_paging(request, number, total),
        states=sorted(ISSUE_STATES),
        state=state if state in ISSUE_STATES or state == ANY_STATE else "",
        problem=problem,
    )


async def issue_page(request: Request[State]) -> Response:
    session = await current_session(request)
    if session is None:
        return to_login(request)
    issue_id = _issue_id(request)
    number = _page_number(request)
    async with request.state["readers"].begin() as db:
        issue = await store.get_issue(db, issue_id) if issue_id else None
        if issue is not None:
            incidents = await store.incidents_by_id(db, [issue.incident_id or ""])
            jobs, total = await store.list_jobs(
                db, issue_id=issue.id, limit=PAGE_SIZE, offset=(number - 1) * PAGE_SIZE
            )
    if issue is None:
        return _missing(request, session, issue_id)
    tenant = default_company(request)
    data = issue_json(issue, incident=incidents.get(issue.incident_id or ""))
    return render_page(
        request,
        "issue.html",
        session,
        issue=data,
        actions=[a.value for a in allowed_actions(issue.state)],
        jobs=[job_json(job, default_tenant=tenant) for job in jobs],
        total=total,
        paging=_paging(request, number, total),
        message=request.query_params.get("message", "")[:200] or None,
    )


async def acknowledge_from_dashboard(request: Request[State]) -> Response:
    return await _move(request, IssueAction.ACKNOWLEDGE)


async def resolve_from_dashboard(request: Request[State]) -> Response:
    return await _move(request, IssueAction.RESOLVE)


async def ignore_from_dashboard(request: Request[State]) -> Response:
    return await _move(request, IssueAction.IGNORE)


async def _move(request: Request[State], action: IssueAction) -> Response:
    session = await current_session(request)
    if session is None:
        return to_login(request)
    issue_id = _issue_id(request)
    back = _issue_url(issue_id)
    checked = await _may_post(request, session, back=back, what=f"{action.value} an issue")
    if checked is not None:
        return checked
    try:
        async with request.state["sessions"].begin() as db:
            await change_issue(db, issue_id, action)
    except DomainError as exc:
        return _refused_for(request, session, exc, back=back)
    target = URL(back).include_query_params(message=MOVED[action])
    return RedirectResponse(str(target), status_code=303)


async def resend_confirm_page(request: Request[State]) -> Response:
    """What a resend would take (the dry run), and the button that starts it."""
    session = await current_session(request)
    if session is None:
        return to_login(request)
    issue_id = _issue_id(request)
    back = _issue_url(issue_id)
    if not session.may_write:
        return refused(request, session, 403, WRITE_NEEDED.format(what="resending"), back=back)
    try:
        async with request.state["readers"].begin() as db:
            count, job_ids = await preview_resend(db, issue_id, limit=MAX_PREVIEW_JOBS)
            issue = await store.get_issue(db, issue_id)
    except DomainError:
        return _missing(request, session, issue_id)
    assert issue is not None
    return render_page(
        request,
        "resend.html",
        session,
        issue=issue_json(issue),
        count=count,
        job_ids=job_ids,
    )


async def resend_from_dashboard(request: Request[State]) -> Response:
    session = await current_session(request)
    if session is None:
        return to_login(request)
    issue_id = _issue_id(request)
    back = _issue_url(issue_id)
    checked = await _may_post(request, session, back=back, what="resending")
    if checked is not None:
        return checked
    try:
        async with request.state["sessions"].begin() as db:
            operation = await start_resend(db, issue_id)
            operation_id = operation.id
    except DomainError as exc:
        return _refused_for(request, session, exc, back=back)
    request.state["wake_operations"]()
    return RedirectResponse(f"/operations/{operation_id}", status_code=303)


async def operation_page(request: Request[State]) -> Response:
    """A bulk operation's progress; its panel refreshes in place until it has ended."""
    session = await current_session(request)
    if session is None:
        return to_login(request)
    try:
        operation_id = decode_id(request.path_params["operation_id"])
    except DomainError:
        operation_id = ""
    async with request.state["readers"].begin() as db:
        operation = await store.get_operation(db, operation_id) if operation_id else None
    if operation is None:
        response = render_page(request, "missing.html", session, what="such operation")
        response.status_code = 404
        return response
    data = operation_json(operation)
    issue_id = data["origin"].get("issueId")
    return render_page(
        request,
        "operation.html",
        session,
        partial="_operation.html",
        operation=data,
        running=data["state"] in UNFINISHED,
        issue_url=_issue_url(str(issue_id)) if issue_id else None,
    )


# Shared by the pages above


async def _may_post(
    request: Request[State], session: Session, *, back: str, what: str
) -> Response | None:
    """The refusal when the form lacks the page's CSRF token or the token may only read."""
    form = await read_form(request)
    if not csrf_matches(session, form.get("csrf")):
        return refused(request, session, 403, CSRF_REFUSED, back=back)
    if not session.may_write:
        return refused(request, session, 403, WRITE_NEEDED.format(what=what), back=back)
    return None


def _refused_for(
    request: Request[State], session: Session, exc: DomainError, *, back: str
) -> Response:
    status = next((c for cls, c in STATUS_BY_ERROR.items() if isinstance(exc, cls)), 400)
    return refused(request, session, status, exc.detail, back=back)


def _missing(request: Request[State], session: Session, issue_id: str) -> Response:
    what = f"issue {issue_id}" if issue_id else "such issue"
    response = render_page(request, "missing.html", session, what=what)
    response.status_code = 404
    return response


def _issue_id(request: Request[State]) -> str:
    """The issue the path names ("" when it cannot name one: the pages answer 404)."""
    try:
        return decode_id(request.path_params["issue_id"])
    except DomainError:
        return ""


def _issue_url(issue_id: str) -> str:
    return f"/issues/{quote(issue_id, safe='')}" if issue_id else "/issues"


def _page_number(request: Request[State]) -> int:
    raw = request.query_params.get("page", "1")
    number = int(raw) if raw.isdigit() and len(raw) <= 6 else 1
    return min(max(number, 1), MAX_PAGE_NUMBER)


def _paging(request: Request[State], number: int, total: int) -> dict[str, Any]:
    """Links to the previous and next page of the list (None where there is none)."""
    pages = max((total + PAGE_SIZE - 1) // PAGE_SIZE, 1)

    def link(to: int) -> str:
        url = request.url.remove_query_params(["page", "partial"])
        return f"{url.path}?{url.include_query_params(page=to).query}"

    return {
        "number": number,
        "pages": pages,
        "previous": link(number - 1) if number > 1 else None,
        "next": link(number + 1) if number < pages else None,
    }
