"""`/api/v1/issues`: failures grouped by cause, each with its jobs, and a person's moves
(acknowledge, resolve, ignore)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from service import store
from service.domain import (
    MAX_PAGE_SIZE,
    IssueAction,
    NotFound,
    decode_id,
    issue_json,
    job_json,
    parse_issue_query,
    parse_paging_query,
)
from service.flows import change_issue
from service.web.auth import require_write
from service.web.schemas import page_json
from service.web.state import State

NO_ISSUE = "no issue with id {issue_id!r}"


async def list_issues(request: Request[State]) -> Response:
    issue_filter, page = parse_issue_query(request.query_params.multi_items())
    async with request.state["readers"].begin() as session:
        issues, total = await store.list_issues(
            session,
            states=issue_filter.states,
            tenants=issue_filter.tenants,
            limit=page.size,
            offset=page.offset,
        )
        incidents = await store.incidents_by_id(session, [i.incident_id or "" for i in issues])
    items = [issue_json(i, incident=incidents.get(i.incident_id or "")) for i in issues]
    return JSONResponse(page_json(items, total=total, page=page, max_size=MAX_PAGE_SIZE))


async def get_issue(request: Request[State]) -> Response:
    """The issue, and one page of its jobs (newest first; `pageSize`, `pageNumber`)."""
    issue_id = decode_id(request.path_params["issue_id"])
    page = parse_paging_query(request.query_params.multi_items())
    async with request.state["readers"].begin() as session:
        issue = await store.get_issue(session, issue_id)
        if issue is None:
            raise NotFound(NO_ISSUE.format(issue_id=issue_id))
        incidents = await store.incidents_by_id(session, [issue.incident_id or ""])
        jobs, total = await store.list_jobs(
            session, issue_id=issue.id, limit=page.size, offset=page.offset
        )
    default_tenant = request.state["visma"].default_tenant
    data = issue_json(issue, incident=incidents.get(issue.incident_id or ""))
    items = [job_json(job, default_tenant=default_tenant) for job in jobs]
    data["jobs"] = page_json(items, total=total, page=page, max_size=MAX_PAGE_SIZE)
    return JSONResponse(data)


async def acknowledge_issue(request: Request[State]) -> Response:
    return await _move(request, IssueAction.ACKNOWLEDGE)


async def resolve_issue(request: Request[State]) -> Response:
    return await _move(request, IssueAction.RESOLVE)


async def ignore_issue(request: Request[State]) -> Response:
    return await _move(request, IssueAction.IGNORE)


async def _move(request: Request[State], action: IssueAction) -> Response:
    """A person's move of an issue (write tokens only)."""
    require_write(request)
    issue_id = decode_id(request.path_params["issue_id"])
    async with request.state["sessions"].begin() as session:
        issue = await change_issue(session, issue_id, action)
        incidents = await store.incidents_by_id(session, [issue.incident_id or ""])
        data = issue_json(issue, incident=incidents.get(issue.incident_id or ""))
    return JSONResponse(data)
