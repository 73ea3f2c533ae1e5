"""Errors the domain raises; the web layer maps each class to an HTTP status."""

from __future__ import annotations


class DomainError(Exception):
    """Base class: `code` is the machine-readable name, `detail` says what is wrong."""

    code = "error"
    retry_after_seconds: int | None = None
    """When set, the answer says to retry after this many seconds (`Retry-After`)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidInput(DomainError):
    """The caller sent something we cannot use (bad JSON, field, filter or id)."""

    code = "invalid_input"


class NotFound(DomainError):
    """The thing asked for does not exist."""

    code = "not_found"


class Conflict(DomainError):
    """The request clashes with what is stored."""

    code = "conflict"


class InvalidState(DomainError):
    """The request is not allowed in the thing's current state."""

    code = "invalid_state"


class NotConfigured(DomainError):
    """A setting this action needs is missing."""

    code = "not_configured"


class IdempotencyKeyReused(DomainError):
    """An Idempotency-Key already made a job from another request (422: a client bug; the
    draft standard and Stripe both refuse it rather than guess which request was meant)."""

    code = "idempotency_key_reused"


class IdempotencyKeyInUse(Conflict):
    """A request with this Idempotency-Key is still being written: retry in a moment."""

    code = "idempotency_key_in_use"
    retry_after_seconds = 1
