"""`/api/v1/alerts`: alerts raised, and every attempt at delivering each."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from service import store
from service.domain import MAX_PAGE_SIZE, parse_alert_query
from service.flows import utcnow
from service.web.schemas import alert_json, page_json
from service.web.state import State


async def list_alerts(request: Request[State]) -> Response:
    alert_filter, page = parse_alert_query(request.query_params.multi_items())
    async with request.state["readers"].begin() as session:
        alerts, total = await store.list_alerts(
            session, kinds=alert_filter.kinds, limit=page.size, offset=page.offset
        )
        deliveries = await store.alert_deliveries(session, [a.id for a in alerts])
        attempts = await store.delivery_attempts(
            session, [d.id for ds in deliveries.values() for d in ds]
        )
    now = utcnow()
    items = [alert_json(a, deliveries[a.id], attempts, now=now) for a in alerts]
    return JSONResponse(page_json(items, total=total, page=page, max_size=MAX_PAGE_SIZE))
