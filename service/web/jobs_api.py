"""`/api/v1/jobs`: submit a job, list jobs, show one with its timeline."""

from __future__ import annotations

from datetime import datetime

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from service import store
from service.domain import (
    MAX_PAGE_SIZE,
    NotFound,
    TimeCondition,
    decode_id,
    job_json,
    parse_job_create,
    parse_job_query,
)
from service.flows import submit_job
from service.web.auth import require_write
from service.web.errors import error_response
from service.web.schemas import etag_of, page_json
from service.web.state import State
from service.web.webhooks import BodyTooLarge, read_body

JOB_NOT_FOUND = "no job with id {job_id!r}"


async def create_job(request: Request[State]) -> Response:
    require_write(request)
    state = request.state
    limit = state["settings"].MAX_SUBMIT_BYTES
    try:
        raw = await read_body(request, limit)
    except BodyTooLarge:
        return error_response(413, "too_large", f"body is larger than MAX_SUBMIT_BYTES={limit}")
    job_create = parse_job_create(raw)
    job_id = await submit_job(
        state["sessions"],
        state["visma"],
        job_create.to_request(),
        source="api",
        settings=state["submit_settings"],
    )
    data, etag = await _job_view(request, job_id)
    location = request.url_for("get_job", job_id=job_id).path
    return JSONResponse(data, status_code=201, headers={"Location": location, "ETag": etag})


async def list_jobs(request: Request[State]) -> Response:
    job_filter, page = parse_job_query(request.query_params.multi_items())
    async with request.state["readers"].begin() as session:
        jobs, total = await store.list_jobs(
            session,
            states=job_filter.states,
            visma_job_id=job_filter.visma_job_id,
            tags=job_filter.tags,
            last_modified=_condition(job_filter.last_modified),
            created=_condition(job_filter.created),
            tenants=job_filter.tenants,
            default_tenant=_default_tenant(request),
            limit=page.size,
            offset=page.offset,
        )
    items = [job_json(job, default_tenant=_default_tenant(request)) for job in jobs]
    return JSONResponse(page_json(items, total=total, page=page, max_size=MAX_PAGE_SIZE))


async def get_job(request: Request[State]) -> Response:
    job_id = decode_id(request.path_params["job_id"])
    data, etag = await _job_view(request, job_id)
    if etag in _etags(request.headers.get("if-none-match")):
        return Response(status_code=304, headers={"ETag": etag})
    return JSONResponse(data, headers={"ETag": etag})


async def _job_view(request: Request[State], job_id: str) -> tuple[dict[str, object], str]:
    if "\x00" in job_id:  # PostgreSQL text cannot hold NUL, so no such job can exist
        raise NotFound(JOB_NOT_FOUND.format(job_id=job_id))
    async with request.state["readers"].begin() as session:
        job = await store.get_job(session, job_id)
        if job is None:
            raise NotFound(JOB_NOT_FOUND.format(job_id=job_id))
        events = await store.job_events(session, job_id)
    data = job_json(job, events, default_tenant=_default_tenant(request))
    return data, etag_of(data)


def _default_tenant(request: Request[State]) -> str | None:
    return request.state["visma"].default_tenant


def _etags(header: str | None) -> set[str]:
    if not header:
        return set()
    return {tag.strip().removeprefix("W/") for tag in header.split(",")}


def _condition(condition: TimeCondition | None) -> tuple[str, datetime] | None:
    return (condition.op, condition.at) if condition else None
