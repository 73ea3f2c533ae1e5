"""`POST /api/v1/jobs/batch`: many jobs in one request, each answered on its own."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from service import store
from service.domain import DomainError, job_json, parse_batch
from service.flows import BatchItem, ItemResult, submit_batch
from service.web.auth import require_write
from service.web.errors import error_response
from service.web.jobs_api import check_job_callback
from service.web.state import State
from service.web.webhooks import BodyTooLarge, read_body


async def create_jobs_batch(request: Request[State]) -> Response:
    """Store every good job of the batch (one transaction) and answer at once, in the batch's
    order: `201` made, `200` made earlier under the item's `idempotencyKey`, `4xx` refused
    with its error. The jobs are sent afterwards, as each company's rate budget allows."""
    require_write(request)
    state = request.state
    settings = state["settings"]
    limit = settings.MAX_BATCH_BYTES
    try:
        raw = await read_body(request, limit)
    except BodyTooLarge:
        return error_response(413, "too_large", f"body is larger than MAX_BATCH_BYTES={limit}")
    parsed = parse_batch(raw, max_jobs=settings.MAX_BATCH_JOBS)
    items = []
    refusals: dict[str, DomainError | None] = {}  # per callbackUrl: a batch often names one
    for item in parsed:
        if item.request is None:
            items.append(BatchItem(None, error=item.error))
            continue
        url = item.request.callback_url
        if url is not None and url not in refusals:
            try:
                await check_job_callback(request, item.request)
                refusals[url] = None
            except DomainError as exc:
                refusals[url] = exc
        refusal = None if url is None else refusals[url]
        if refusal is not None:
            items.append(BatchItem(None, error=refusal))
            continue
        items.append(BatchItem(item.request, key=item.key))
    results = await submit_batch(
        state["sessions"], state["visma"], items, source="api", readers=state["readers"]
    )
    if any(result.status == 201 for result in results):
        state["wake_resolver"]()
    return JSONResponse({"results": await _results_json(request, results)})


async def _results_json(request: Request[State], results: list[ItemResult]) -> list[Any]:
    """Each result with its job as lists show it (one read for all of them)."""
    ids = [result.job_id for result in results if result.job_id is not None]
    async with request.state["readers"].begin() as session:
        jobs = {job.id: job for job in await store.get_jobs(session, ids)}
        urls = await store.callback_urls(session, ids)
    default_tenant = request.state["visma"].default_tenant
    shown: list[Any] = []
    for result in results:
        entry: dict[str, Any] = {"index": result.index, "status": result.status}
        if result.job_id is not None and result.job_id in jobs:
            entry["job"] = job_json(
                jobs[result.job_id],
                default_tenant=default_tenant,
                callback_url=urls.get(result.job_id),
            )
        elif result.error is not None:
            entry["error"] = {"error": result.error.code, "detail": result.error.detail}
        shown.append(entry)
    return shown
