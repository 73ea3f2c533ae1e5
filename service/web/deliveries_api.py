"""`/api/v1/deliveries`: the inbox of every webhook delivery we stored."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from service import store
from service.domain import MAX_PAGE_SIZE, parse_delivery_query
from service.web.schemas import delivery_json, page_json
from service.web.state import State


async def list_deliveries(request: Request[State]) -> Response:
    delivery_filter, page = parse_delivery_query(request.query_params.multi_items())
    async with request.state["readers"].begin() as session:
        deliveries, total = await store.list_deliveries(
            session,
            notification_id=delivery_filter.notification_id,
            matched=delivery_filter.matched,
            kind=delivery_filter.kind,
            limit=page.size,
            offset=page.offset,
        )
    items = [delivery_json(d) for d in deliveries]
    return JSONResponse(page_json(items, total=total, page=page, max_size=MAX_PAGE_SIZE))
