"""`/api/v1/deliveries`: the inbox of every webhook delivery we stored."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from service import store
from service.domain import MAX_PAGE_SIZE, NotFound, decode_id, job_json, parse_delivery_query
from service.flows import replay_delivery
from service.web.auth import require_write
from service.web.schemas import delivery_detail_json, delivery_json, page_json
from service.web.state import State


async def list_deliveries(request: Request[State]) -> Response:
    delivery_filter, page = parse_delivery_query(request.query_params.multi_items())
    async with request.state["readers"].begin() as session:
        deliveries, total = await store.list_deliveries(
            session,
            notification_id=delivery_filter.notification_id,
            matched=delivery_filter.matched,
            kind=delivery_filter.kind,
            event=delivery_filter.event,
            limit=page.size,
            offset=page.offset,
        )
    items = [delivery_json(d) for d in deliveries]
    return JSONResponse(page_json(items, total=total, page=page, max_size=MAX_PAGE_SIZE))


async def get_delivery(request: Request[State]) -> Response:
    """One stored delivery, with its forwards (one per target) and their attempts."""
    delivery_id = decode_id(request.path_params["delivery_id"])
    async with request.state["readers"].begin() as session:
        delivery = await store.get_inbox_delivery(session, delivery_id)
        if delivery is None:
            raise NotFound(f"no delivery with id {delivery_id!r}")
        forwards = (await store.delivery_forwards(session, [delivery.id])).get(delivery.id, [])
        attempts = await store.delivery_attempts(session, [f.id for f in forwards])
    return JSONResponse(delivery_detail_json(delivery, forwards, attempts))


async def replay(request: Request[State]) -> Response:
    """Run a stored delivery through correlation and resolution again; answers its job."""
    require_write(request)
    state = request.state
    replayed = await replay_delivery(
        state["sessions"],
        state["visma"],
        decode_id(request.path_params["delivery_id"]),
        settings=state["resolve_settings"],
        source="replay",
    )
    job = None
    if replayed.job_id is not None:
        async with state["readers"].begin() as session:
            row = await store.get_job(session, replayed.job_id)
            if row is not None:
                job = job_json(row, await store.job_events(session, replayed.job_id))
    return JSONResponse({"deliveryId": replayed.delivery_id, "jobId": replayed.job_id, "job": job})
