"""Background jobs: the `erp-api-background` header and the job state Visma reports."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from service.simulator.outcomes import JobResult, JobStatus, Outcome
from service.simulator.wire import DISPATCHER_PREFIX

BACKGROUND_HEADER = "erp-api-background"
WebhookAddress = Literal["subscription", "none"]

# Custom keys become header names on the webhook, so they must be HTTP tokens (RFC 9110 5.6.2).
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_RESERVED_KEYS = frozenset({"content-type", "content-length", "host", "transfer-encoding"})


class BackgroundHeaderError(ValueError):
    """The `erp-api-background` header is malformed; the message says how."""


@dataclass(frozen=True)
class BackgroundRequest:
    """What an `erp-api-background` header asks for."""

    webhook_address: WebhookAddress
    custom_headers: dict[str, str] = field(default_factory=dict)


def parse_background_header(value: str) -> BackgroundRequest:
    """Parse `subscription`, `subscription:k=v,...` or `none`; BackgroundHeaderError otherwise."""
    # Visma's docs write the keywords in lower case; accepting any case is our guess.
    keyword, colon, pairs = value.partition(":")
    keyword = keyword.lower()
    if keyword == "none" and not colon:
        return BackgroundRequest("none")
    if keyword != "subscription":
        raise BackgroundHeaderError(
            f"{BACKGROUND_HEADER} must be 'subscription', 'subscription:<key>=<value>,...' "
            "or 'none'"
        )
    if not colon:
        return BackgroundRequest("subscription")
    if not pairs:
        raise BackgroundHeaderError(f"{BACKGROUND_HEADER}: no key=value pairs after ':'")
    custom: dict[str, str] = {}
    for pair in pairs.split(","):
        if pair.count("=") != 1:
            raise BackgroundHeaderError(f"{BACKGROUND_HEADER}: {pair!r} is not key=value")
        key, _, item = pair.partition("=")
        if not _TOKEN.match(key):
            raise BackgroundHeaderError(f"{BACKGROUND_HEADER}: {key!r} is not a header name")
        lowered = key.lower()
        if lowered in _RESERVED_KEYS or lowered.startswith(DISPATCHER_PREFIX):
            raise BackgroundHeaderError(f"{BACKGROUND_HEADER}: {key!r} is a reserved header")
        if lowered in (existing.lower() for existing in custom):
            raise BackgroundHeaderError(f"{BACKGROUND_HEADER}: {key!r} is given twice")
        if any(ord(char) < 0x20 or ord(char) == 0x7F for char in item):
            raise BackgroundHeaderError(f"{BACKGROUND_HEADER}: the value of {key!r} is invalid")
        custom[key] = item
    return BackgroundRequest("subscription", custom)


def format_utc(at: datetime | None) -> str | None:
    """`2026-03-02T08:15:04.120Z`, the timestamp format of the state endpoint."""
    if at is None:
        return None
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


@dataclass
class BackgroundJob:
    """One background call: the request as received, its outcome and its progress."""

    id: str
    method: str
    path: str
    query: str
    request_headers: dict[str, str]
    request_body: bytes
    background: BackgroundRequest
    outcome: Outcome
    original_uri: str
    state_location: str
    content_location: str
    received_at: datetime
    started_at: datetime
    tenant: str = ""
    """The company whose token sent the call; only its tokens may read the job."""
    status: JobStatus = "Started"
    finished_at: datetime | None = None
    result: JobResult | None = None
    notification_ids: list[str] = field(default_factory=list)
    accept_dropped: bool = False
    """The simulator accepted the call but lost its 202 on purpose."""

    @property
    def done(self) -> bool:
        """True once the job is Finished or Failed."""
        return self.result is not None

    @property
    def has_content(self) -> bool:
        """True when the original request's response had a body."""
        return self.result is not None and self.result.content is not None

    def to_state(self) -> dict[str, Any]:
        """The BackgroundRequestStateDto of `GET /v1/background/{id}`."""
        result = self.result
        return {
            "id": self.id,
            "status": self.status,
            "statusCode": result.status_code if result else 0,
            "receivedUtc": format_utc(self.received_at),
            "startedUtc": format_utc(self.started_at),
            "finishedUtc": format_utc(self.finished_at),
            "webhookAddress": self.background.webhook_address,
            "errorMessage": result.error_message if result else None,
            # What Visma puts in `reference` is unknown; every example shows null.
            "reference": None,
            "originalUri": self.original_uri,
            "hasResponseContent": self.has_content,
            "hasRequestContent": bool(self.request_body),
            # The examples show contentLocation on every Finished job, even without content.
            "contentLocation": self.content_location if self.status == "Finished" else None,
            "responseHeaders": dict(result.headers) if result else {},
        }

    def to_json(self) -> dict[str, Any]:
        """The job as `GET /_sim/jobs` shows it: the request, the outcome and the state."""
        return {
            "id": self.id,
            "request": {
                "method": self.method,
                "path": self.path,
                "query": self.query,
                "headers": self.request_headers,
                "body": self.request_body.decode("utf-8", errors="replace"),
            },
            "webhook_address": self.background.webhook_address,
            "custom_headers": self.background.custom_headers,
            "outcome": self.outcome.to_json(),
            "notification_ids": list(self.notification_ids),
            "accept_dropped": self.accept_dropped,
            "tenant": self.tenant,
            "state": self.to_state(),
        }
