"""The service's errors as exceptions, each carrying its JSON error (`code`, `detail`)."""

from __future__ import annotations

from typing import Any


class VismaHooksError(Exception):
    """An answer the service gave as an error: `status`, and its `{"error", "detail"}`."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail


class InvalidInput(VismaHooksError):
    """400 or 413: something in the request is wrong; `detail` names it."""


class Unauthorized(VismaHooksError):
    """401: no token, or not one of the service's API_TOKENS."""


class Forbidden(VismaHooksError):
    """403: a read-only token tried to write."""


class NotFound(VismaHooksError):
    """404: no such job (or delivery)."""


class Conflict(VismaHooksError):
    """409 or 422: the request clashes with what is stored (an Idempotency-Key reused for
    another request, or still in use; a job Visma has, which may not be resent)."""


class ServiceUnavailable(VismaHooksError):
    """503: the database or Visma's credentials are not there; retry later."""


_BY_STATUS: dict[int, type[VismaHooksError]] = {
    400: InvalidInput,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: InvalidInput,
    422: Conflict,
    503: ServiceUnavailable,
}


def error_for(status: int, body: Any) -> VismaHooksError:
    """The exception for an error answer (any JSON, or none)."""
    code, detail = "error", ""
    if isinstance(body, dict):
        code = str(body.get("error", code))
        detail = str(body.get("detail", ""))
    return _BY_STATUS.get(status, VismaHooksError)(status, code, detail)
