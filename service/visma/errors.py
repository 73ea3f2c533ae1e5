"""Errors raised by the Visma client. No layer above `visma/` sees an httpx type.

VismaError
├── VismaUnavailable   timeout, connection error, 5xx or 429: try again later
│   └── VismaNotSent   the request never left (no connection, no token): safe to resend
│       ├── VismaUnsendable  it cannot be built (a URL httpx refuses): resending fails too
│       └── VismaDeferred    the company's rate budget says wait `retry_after` seconds (it was
│                            not sent, or Visma answered 429, which proves it was not processed)
└── VismaRejected      a 4xx answer: Visma looked at the request and said no
    └── VismaNotFound  404 or 410: Visma does not know (or no longer keeps) the resource
"""

from __future__ import annotations


class VismaError(Exception):
    """Base class of every error the Visma client raises."""

    def __init__(self, message: str, *, status: int | None = None, body: bytes = b"") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.body = body


class VismaUnavailable(VismaError):
    """Visma could not answer now; `retry_after` (seconds) when it said how long to wait."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        body: bytes = b"",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status=status, body=body)
        self.retry_after = retry_after


class VismaNotSent(VismaUnavailable):
    """The request never reached Visma (no connection, no token), so sending it again is safe."""


class VismaUnsendable(VismaNotSent):
    """The request cannot even be built (httpx refuses its URL); it never left, and trying
    again would fail the same way."""


class VismaDeferred(VismaNotSent):
    """Not sent now: the company's rate budget says to wait `retry_after` seconds first. The
    caller parks the work until then (a 429 proves Visma did not process the request)."""

    retry_after: float

    def __init__(
        self,
        message: str,
        *,
        retry_after: float,
        tenant: str,
        status: int | None = None,
        body: bytes = b"",
    ) -> None:
        super().__init__(message, status=status, body=body, retry_after=retry_after)
        self.tenant = tenant


class VismaRejected(VismaError):
    """Visma answered with a 4xx status."""


class VismaNotFound(VismaRejected):
    """Visma answered 404 or 410."""


class VismaNotConfigured(VismaError):
    """A setting the client needs (credentials, URL) is missing."""
