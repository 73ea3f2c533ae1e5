"""`/api/v1/status/components` and `/api/v1/status/incidents`: status-page state."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from service import store
from service.domain import (
    MAX_PAGE_SIZE,
    component_json,
    incident_json,
    parse_component_query,
    parse_incident_query,
)
from service.web.schemas import page_json
from service.web.state import State


async def list_components(request: Request[State]) -> Response:
    status_filter, page = parse_component_query(request.query_params.multi_items())
    async with request.state["readers"].begin() as session:
        components, total = await store.list_components(
            session,
            statuses=status_filter.statuses,
            component=status_filter.component,
            limit=page.size,
            offset=page.offset,
        )
        # Filtered to one component, the view carries its history.
        history = None
        if status_filter.component:
            history = await store.component_history(session, [c.id for c in components])
    items = [component_json(c, history[c.id] if history is not None else None) for c in components]
    return JSONResponse(page_json(items, total=total, page=page, max_size=MAX_PAGE_SIZE))


async def list_incidents(request: Request[State]) -> Response:
    status_filter, page = parse_incident_query(request.query_params.multi_items())
    async with request.state["readers"].begin() as session:
        incidents, total = await store.list_incidents(
            session,
            statuses=status_filter.statuses,
            component=status_filter.component,
            limit=page.size,
            offset=page.offset,
        )
        updates = await store.incident_updates(session, [i.id for i in incidents])
    items = [incident_json(i, updates[i.id]) for i in incidents]
    return JSONResponse(page_json(items, total=total, page=page, max_size=MAX_PAGE_SIZE))
