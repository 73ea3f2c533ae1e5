"""`/api/v1/jobs`: submit a job, list jobs, show one with its timeline."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from service import store
from service.domain import (
    IDEMPOTENCY_HEADER,
    MAX_PAGE_SIZE,
    REPLAYED_HEADER,
    TERMINAL_STATES,
    JobRequest,
    NotConfigured,
    NotFound,
    TimeCondition,
    decode_id,
    job_json,
    parse_job_create,
    parse_job_query,
    parse_until,
    parse_wait,
    result_json,
    validate_key,
)
from service.flows import (
    Submitted,
    check_callback,
    repeated_job_row,
    submit_job,
    submit_once,
)
from service.web.auth import require_write
from service.web.errors import error_response
from service.web.schemas import etag_of, page_json
from service.web.state import State
from service.web.waiters import RETRY_AFTER_SECONDS
from service.web.webhooks import BodyTooLarge, read_body

JOB_NOT_FOUND = "no job with id {job_id!r}"
NO_CALLBACK_SECRET = "callbackUrl needs CALLBACK_SIGNING_SECRET, which is not set"


async def create_job(request: Request[State]) -> Response:
    """Submit one job. With an `Idempotency-Key`, a repeat of the same request answers the job
    the first one made (200, `Idempotent-Replayed: true`) and sends nothing."""
    require_write(request)
    state = request.state
    raw_key = request.headers.get(IDEMPOTENCY_HEADER)
    key = None if raw_key is None else validate_key(raw_key)
    limit = state["settings"].MAX_SUBMIT_BYTES
    try:
        raw = await read_body(request, limit)
    except BodyTooLarge:
        return error_response(413, "too_large", f"body is larger than MAX_SUBMIT_BYTES={limit}")
    job_request = parse_job_create(raw).to_request()
    await check_job_callback(request, job_request)
    if key is not None:
        # A repeat is answered from one read transaction: the key with its job, then the
        # job's timeline.
        async with state["readers"].begin() as session:
            repeat = await repeated_job_row(session, state["visma"], job_request, key=key)
            if repeat is not None:
                data, etag = await _render_view(session, request, *repeat)
                return _created(request, data, etag, replayed=True)
    if key is None:
        submitted = Submitted(
            await submit_job(
                state["sessions"],
                state["visma"],
                job_request,
                source="api",
                settings=state["submit_settings"],
            )
        )
    else:
        submitted = await submit_once(
            state["sessions"],
            state["visma"],
            job_request,
            key=key,
            source="api",
            settings=state["submit_settings"],
            readers=state["readers"],
        )
    data, etag = await _job_view(request, submitted.job_id)
    return _created(request, data, etag, replayed=submitted.replayed)


def _created(
    request: Request[State], data: dict[str, object], etag: str, *, replayed: bool
) -> Response:
    """201 with the new job, or 200 with the job an earlier request with the key made."""
    location = request.url_for("get_job", job_id=data["id"]).path
    headers = {"Location": location, "ETag": etag}
    if replayed:
        return JSONResponse(data, headers=headers | {REPLAYED_HEADER: "true"})
    return JSONResponse(data, status_code=201, headers=headers)


async def check_job_callback(request: Request[State], job_request: JobRequest) -> None:
    """InvalidInput (NotConfigured) for a callbackUrl that may not be called (or signed)."""
    if job_request.callback_url is None:
        return
    settings = request.state["settings"]
    if not settings.CALLBACK_SIGNING_SECRET.get_secret_value():
        raise NotConfigured(NO_CALLBACK_SECRET)
    await check_callback(job_request.callback_url, allowed_hosts=settings.CALLBACK_ALLOWED_HOSTS)


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
        urls = await store.callback_urls(session, [job.id for job in jobs])
    default_tenant = _default_tenant(request)
    items = [
        job_json(job, default_tenant=default_tenant, callback_url=urls.get(job.id)) for job in jobs
    ]
    return JSONResponse(page_json(items, total=total, page=page, max_size=MAX_PAGE_SIZE))


async def get_job(request: Request[State]) -> Response:
    job_id = decode_id(request.path_params["job_id"])
    wait = parse_wait(request.query_params.get("wait"))
    until_finished = parse_until(request.query_params.get("until"))
    held = _etags(request.headers.get("if-none-match"))
    if not (wait and (held or until_finished)):
        return await _plain_view(request, job_id, held)
    waiters = request.state["waiters"]
    if not waiters.take():
        # Every slot is held: answer now, and the client asks again a moment later.
        return await _plain_view(
            request, job_id, held, headers={"Retry-After": str(RETRY_AFTER_SECONDS)}
        )
    try:
        return await _await_change(
            request, job_id, held, deadline=time.monotonic() + wait, until_finished=until_finished
        )
    finally:
        waiters.give_back()


async def _plain_view(
    request: Request[State], job_id: str, held: set[str], *, headers: dict[str, str] | None = None
) -> Response:
    """The job now: 304 when the client holds its ETag, else the job."""
    data, etag = await _job_view(request, job_id)
    if etag in held:
        return Response(status_code=304, headers={"ETag": etag} | (headers or {}))
    return JSONResponse(data, headers={"ETag": etag} | (headers or {}))


NO_RESULT = (
    "job {job_id} has no kept result: it has not finished, or it ended without one (refused, "
    "expired, or answered at once)"
)


async def get_job_result(request: Request[State]) -> Response:
    """What the finished request returned, as kept when the job ended."""
    job_id = decode_id(request.path_params["job_id"])
    async with request.state["readers"].begin() as session:
        result = await store.get_result(session, job_id)
        if result is None:
            if await store.get_job(session, job_id) is None:
                raise NotFound(JOB_NOT_FOUND.format(job_id=job_id))
            raise NotFound(NO_RESULT.format(job_id=job_id))
    return JSONResponse(result_json(result))


async def _await_change(
    request: Request[State],
    job_id: str,
    held: set[str],
    *,
    deadline: float,
    until_finished: bool = False,
) -> Response:
    """The job as soon as its ETag is not one the client holds (with `until_finished`: as
    soon as it has ended), else at the deadline 304 (the job as it stands, when the client
    holds another ETag or none).

    No transaction stays open while waiting: the job is read again only when a commit (here,
    or on another replica through PostgreSQL's NOTIFY) says it may have changed."""
    with store.JOB_CHANGES.watch(job_id) as changed:
        while True:
            changed.clear()  # before the read, so a change during it still wakes the wait
            data, etag = await _shared_view(request, job_id)
            # JobState is a StrEnum: the JSON's state text is found in the set of members.
            done = data["state"] in TERMINAL_STATES if until_finished else etag not in held
            if done:
                return JSONResponse(data, headers={"ETag": etag})
            # In slices, so a waiter whose client has hung up stops within a slice.
            while not changed.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    if etag in held:
                        return Response(status_code=304, headers={"ETag": etag})
                    return JSONResponse(data, headers={"ETag": etag})
                try:
                    await asyncio.wait_for(
                        changed.wait(), timeout=min(remaining, DISCONNECT_CHECK_SECONDS)
                    )
                except TimeoutError:
                    if await request.is_disconnected():
                        return Response(status_code=304, headers={"ETag": etag})


DISCONNECT_CHECK_SECONDS = 5.0
"""How often a waiting request looks whether its client is still there."""


_reads: dict[str, tuple[int, asyncio.Future[tuple[dict[str, object], str]]]] = {}
"""The read in flight for each awaited job, and the change it reads after."""


async def _shared_view(request: Request[State], job_id: str) -> tuple[dict[str, object], str]:
    """The job's view, read once for every waiter that the same change woke: a thousand
    waiters on one job cost one read per change, not a thousand."""
    generation = store.JOB_CHANGES.generation(job_id)
    entry = _reads.get(job_id)
    if entry is None or entry[0] != generation:
        read = asyncio.ensure_future(_job_view(request, job_id))
        _reads[job_id] = entry = (generation, read)

        def forget(
            done: asyncio.Future[tuple[dict[str, object], str]], *, key: str = job_id
        ) -> None:
            if key in _reads and _reads[key][1] is done:
                del _reads[key]
            if not done.cancelled():
                done.exception()  # retrieved: every waiter that wanted it has it raised

        read.add_done_callback(forget)
    # Shielded: one waiter going away does not cancel the read the others wait for.
    return await asyncio.shield(entry[1])


async def _job_view(request: Request[State], job_id: str) -> tuple[dict[str, object], str]:
    if "\x00" in job_id:  # PostgreSQL text cannot hold NUL, so no such job can exist
        raise NotFound(JOB_NOT_FOUND.format(job_id=job_id))
    async with request.state["readers"].begin() as session:
        return await _read_view(session, request, job_id)


async def _read_view(
    session: AsyncSession, request: Request[State], job_id: str
) -> tuple[dict[str, object], str]:
    """The job's single view and its ETag, read in `session`."""
    found = await store.job_with_callback_url(session, job_id)
    if found is None:
        raise NotFound(JOB_NOT_FOUND.format(job_id=job_id))
    return await _render_view(session, request, *found)


async def _render_view(
    session: AsyncSession, request: Request[State], job: store.Job, callback_url: str | None
) -> tuple[dict[str, object], str]:
    """The view of a job already read (with its callback URL): its timeline is read here."""
    job_id = job.id
    events = await store.job_events(session, job_id)
    callback = await store.job_callback(session, job_id) if callback_url else None
    data = job_json(
        job,
        events,
        default_tenant=_default_tenant(request),
        callback_url=callback_url,
        callback=callback,
    )
    return data, etag_of(data)


def _default_tenant(request: Request[State]) -> str | None:
    return request.state["visma"].default_tenant


def _etags(header: str | None) -> set[str]:
    if not header:
        return set()
    return {tag.strip().removeprefix("W/") for tag in header.split(",")}


def _condition(condition: TimeCondition | None) -> tuple[str, datetime] | None:
    return (condition.op, condition.at) if condition else None
