"""Every error leaves as `{"error": "<code>", "detail": "<what is wrong>"}`."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from service.domain import (
    Conflict,
    DomainError,
    IdempotencyKeyReused,
    InvalidInput,
    InvalidState,
    NotConfigured,
    NotFound,
)
from service.logs import FailureLog, reason

log = logging.getLogger(__name__)

DATABASE_UNAVAILABLE = "the database cannot be reached; nothing was stored, retry later"
# Errors that say the statement was wrong or the data bad: a bug to fix, not an outage to wait
# out. Every other driver error (connection refused, lost, not accepted, locked) is one.
_NOT_AN_OUTAGE = (
    sa_exc.IntegrityError,
    sa_exc.ProgrammingError,
    sa_exc.DataError,
    sa_exc.NotSupportedError,
)

_OUTAGES = FailureLog(log, "database for a request")
_BUGS_SEEN: set[str] = set()

STATUS_BY_ERROR: dict[type[DomainError], int] = {
    IdempotencyKeyReused: 422,
    InvalidInput: 400,
    NotFound: 404,
    Conflict: 409,
    InvalidState: 409,
    NotConfigured: 503,
}
_CODE_BY_STATUS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
    503: "unavailable",
}


def error_response(
    status: int, code: str, detail: str, *, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


async def domain_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DomainError)
    status = next((code for cls, code in STATUS_BY_ERROR.items() if isinstance(exc, cls)), 400)
    retry = exc.retry_after_seconds
    headers = None if retry is None else {"Retry-After": str(retry)}
    return error_response(status, exc.code, exc.detail, headers=headers)


async def http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 304:
        return Response(status_code=304, headers=exc.headers)
    code = _CODE_BY_STATUS.get(exc.status_code, "error")
    return error_response(exc.status_code, code, exc.detail, headers=exc.headers)


async def storage_error(request: Request, exc: Exception) -> Response:
    """A database that cannot be reached is a 503 to retry (a webhook sender retries), not a
    500; a driver error that means a bug still is one."""
    if isinstance(exc, _NOT_AN_OUTAGE):
        return await server_error(request, exc)
    _OUTAGES.failed(exc)
    return error_response(503, "unavailable", DATABASE_UNAVAILABLE, headers={"Retry-After": "5"})


async def server_error(request: Request, exc: Exception) -> Response:
    # The first of each cause with its traceback (a bug to fix); its repeats only counted.
    cause = reason(exc)
    where = f"{request.method} {request.url.path[:200]}"
    if cause not in _BUGS_SEEN:
        if len(_BUGS_SEEN) < 1000:
            _BUGS_SEEN.add(cause)
        log.error("unhandled error in %s: %s", where, cause, exc_info=exc)
    else:
        log.error("unhandled error in %s again: %s", where, cause)
    return error_response(500, "internal_error", "the service failed; see its log")
