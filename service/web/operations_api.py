"""Bulk operations over HTTP: an issue's jobs re-sent (or counted first, `dryRun`), a window of
deliveries replayed, an operation's progress, and its cancelling."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from service import store
from service.domain import (
    MAX_PREVIEW_JOBS,
    InvalidInput,
    NotFound,
    ResendPreview,
    decode_id,
    operation_json,
    parse_json,
    parse_replay_request,
    parse_resend_request,
)
from service.flows import cancel_operation as cancel_flow
from service.flows import preview_resend, start_replay, start_resend, utcnow
from service.web.auth import require_write
from service.web.errors import error_response
from service.web.state import State
from service.web.webhooks import BodyTooLarge, read_body

MAX_OPERATION_BODY_BYTES = 4096
NO_OPERATION = "no operation with id {operation_id!r}"
NOT_JSON = "the body is not JSON"


async def resend_issue(request: Request[State]) -> Response:
    """`{"dryRun": true}`: how many (and which) jobs a resend would take; else start one (202)."""
    require_write(request)
    issue_id = decode_id(request.path_params["issue_id"])
    body = await _json_body(request, optional=True)
    if isinstance(body, Response):
        return body
    if parse_resend_request(body):
        async with request.state["readers"].begin() as session:
            count, ids = await preview_resend(session, issue_id, limit=MAX_PREVIEW_JOBS)
        preview = ResendPreview(issue_id=issue_id, count=count, job_ids=ids)
        return JSONResponse(preview.as_json())
    async with request.state["sessions"].begin() as session:
        data = operation_json(await start_resend(session, issue_id))
    return _started(request, data)


async def replay_deliveries(request: Request[State]) -> Response:
    """Replay every Visma delivery received in `[since, until)` (of `tenant`) as an operation."""
    require_write(request)
    body = await _json_body(request, optional=False)
    if isinstance(body, Response):
        return body
    window = parse_replay_request(body, now=utcnow())
    async with request.state["sessions"].begin() as session:
        data = operation_json(await start_replay(session, window))
    return _started(request, data)


async def get_operation(request: Request[State]) -> Response:
    operation_id = decode_id(request.path_params["operation_id"])
    async with request.state["readers"].begin() as session:
        operation = await store.get_operation(session, operation_id)
        if operation is None:
            raise NotFound(NO_OPERATION.format(operation_id=operation_id))
        data = operation_json(operation)
    return JSONResponse(data)


async def cancel_operation(request: Request[State]) -> Response:
    require_write(request)
    operation_id = decode_id(request.path_params["operation_id"])
    async with request.state["sessions"].begin() as session:
        data = operation_json(await cancel_flow(session, operation_id))
    return JSONResponse(data)


def _started(request: Request[State], data: dict[str, Any]) -> Response:
    request.state["wake_operations"]()
    location = f"/api/v1/operations/{data['id']}"
    return JSONResponse(data, status_code=202, headers={"Location": location})


async def _json_body(request: Request[State], *, optional: bool) -> Any:
    """The JSON body (None when empty and `optional`), or the answer that refuses it."""
    try:
        raw = await read_body(request, MAX_OPERATION_BODY_BYTES)
    except BodyTooLarge:
        return error_response(413, "too_large", f"body is larger than {MAX_OPERATION_BODY_BYTES}")
    if not raw.strip():
        if optional:
            return None
        raise InvalidInput(NOT_JSON)
    try:
        return parse_json(raw)
    except ValueError:
        raise InvalidInput(NOT_JSON) from None
