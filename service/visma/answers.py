"""What Visma's answers mean: the results of a call, the errors a status or a body stands for,
how long a 429 or a 5xx asks to wait, and which failures are tried again in place."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from service.visma.errors import (
    VismaDeferred,
    VismaError,
    VismaNotSent,
    VismaRejected,
    VismaUnavailable,
    VismaUnsendable,
)
from service.visma.pacing import MAX_WAIT_SECONDS, not_before

# Retries inside one call (a 5xx, the token endpoint's 429) wait at most this long; a 429 from
# the API is never retried in place: the work is parked for the whole Retry-After instead.
MAX_RETRY_AFTER_SECONDS = 60.0
DEFAULT_429_PAUSE_SECONDS = 1.0


@dataclass(frozen=True)
class SubmitAccepted:
    """Visma's 202 to a background call."""

    visma_job_id: str
    state_location: str | None


@dataclass(frozen=True)
class SubmitCompleted:
    """Visma answered a background call at once with a 2xx (it did the work synchronously)."""

    status: int
    location: str | None


@dataclass(frozen=True)
class Content:
    """What a finished background request returned (`/content`)."""

    status: int
    content_type: str | None
    body: bytes


def retry_wait(exc: Exception) -> bool | float:
    """Whether (and after how long) a call that may be sent twice is tried again in place."""
    if isinstance(exc, VismaUnsendable | VismaDeferred):
        return False
    if isinstance(exc, VismaUnavailable):
        return exc.retry_after if exc.retry_after is not None else True
    return False


def retry_wait_unsent(exc: Exception) -> bool | float:
    """Whether a call that must not be sent twice is tried again: only if it never left."""
    if isinstance(exc, VismaUnsendable | VismaDeferred):
        return False
    return isinstance(exc, VismaNotSent)


def unavailable(response: httpx.Response) -> VismaUnavailable:
    """The error a 5xx or 429 answer stands for, with the wait it asks for."""
    return VismaUnavailable(
        f"Visma answered {response.status_code}",
        status=response.status_code,
        body=response.content,
        retry_after=retry_after(response.headers),
    )


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from `Retry-After` or `X-RateLimit-Reset` (both in seconds here)."""
    for name in ("retry-after", "x-ratelimit-reset"):
        raw = headers.get(name)
        if raw is None:
            continue
        try:
            return max(0.0, min(float(raw), MAX_RETRY_AFTER_SECONDS))
        except ValueError:
            continue
    return None


def budget_wait(headers: Mapping[str, str]) -> float:
    """Seconds a 429 asks to wait, in full: `Retry-After`, else `X-RateLimit-Reset` (seconds),
    read as "not before" (whole seconds may be rounded down); bounded, as outside input is."""
    for name in ("retry-after", "x-ratelimit-reset"):
        try:
            seconds = float(headers.get(name, ""))
        except ValueError:
            continue
        if seconds == seconds:  # not NaN
            return min(max(not_before(seconds), DEFAULT_429_PAUSE_SECONDS), MAX_WAIT_SECONDS)
    return DEFAULT_429_PAUSE_SECONDS


def raise_for_status(response: httpx.Response) -> None:
    """Raise the error an answer of 4xx or 5xx stands for."""
    if response.status_code >= 500 or response.status_code == 429:
        raise unavailable(response)
    if response.status_code >= 400:
        raise VismaRejected(
            f"Visma answered {response.status_code}",
            status=response.status_code,
            body=response.content,
        )


def submit_answer(response: httpx.Response) -> SubmitAccepted | SubmitCompleted:
    """What Visma's answer to a background call says (the errors `VismaClient.submit` names)."""
    if 200 <= response.status_code < 300 and response.status_code != 202:
        return SubmitCompleted(response.status_code, response.headers.get("location"))
    if response.status_code >= 500:
        raise unavailable(response)
    if response.status_code != 202:
        raise VismaRejected(
            f"Visma answered {response.status_code} instead of 202",
            status=response.status_code,
            body=response.content,
        )
    data = json_object(response)
    fields = {k.lower(): v for k, v in data.items()}
    job_id = fields.get("id")
    if not isinstance(job_id, str) or not job_id:
        raise VismaError("Visma's 202 carried no job id", status=202, body=response.content)
    location = fields.get("statelocation")
    return SubmitAccepted(
        visma_job_id=job_id, state_location=location if isinstance(location, str) else None
    )


def json_object(response: httpx.Response) -> dict[str, Any]:
    """The answer's body, which must be a JSON object."""
    try:
        data = json.loads(response.content)
    except ValueError:
        raise VismaError(
            f"Visma answered {response.status_code} with a body that is not JSON",
            status=response.status_code,
            body=response.content,
        ) from None
    if not isinstance(data, dict):
        raise VismaError(
            "Visma answered with JSON that is not an object",
            status=response.status_code,
            body=response.content,
        )
    return data


def transport_error(exc: httpx.HTTPError) -> Exception:
    """What a request that got no answer means for the caller."""
    if isinstance(exc, httpx.ConnectError):
        return VismaNotSent(f"cannot connect to Visma: {exc}")
    if isinstance(exc, httpx.TimeoutException):
        return VismaUnavailable(f"Visma did not answer in time: {exc!r}")
    return VismaUnavailable(f"HTTP error talking to Visma: {exc!r}")
