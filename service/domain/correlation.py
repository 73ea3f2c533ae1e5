"""The `erp-api-background` header we send, and the custom headers Visma sends back.

Each tag becomes a header of its own on the webhook, so tag keys must be valid header names and
values must survive the `key=value,key=value` list: no `,`, `=` or white space.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from service.domain.errors import InvalidInput

BACKGROUND_HEADER = "erp-api-background"
JOB_ID_KEY = "vh-job-id"
TRACEPARENT_KEY = "vh-traceparent"
"""The job's W3C trace context, carried to Visma and back so the webhook joins the job's trace
(hex digits and '-': within the pairs' value rules, and `vh-` keeps tags from taking it)."""
MAX_TAGS = 16

_TRACEPARENT = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
# Visible ASCII without the list's separators; quotes and semicolons are left out to keep the
# header unambiguous to any proxy that parses it.
_VALUE = re.compile(r"[!#-+\--:<>-~]{1,200}")
# Headers a tag must not shadow: ours, the dispatcher's, and the standard ones HTTP relies on.
_RESERVED_PREFIXES = ("x-vwd-", "vh-")
_RESERVED_NAMES = frozenset(
    {
        "host",
        "content-type",
        "content-length",
        "authorization",
        "connection",
        "user-agent",
        "accept",
        "accept-encoding",
        "transfer-encoding",
        "date",
        "cookie",
        "expect",
        "te",
    }
)


def validate_tags(tags: Mapping[str, object]) -> dict[str, str]:
    """Tags checked so they cannot break the header; raises InvalidInput naming the bad one."""
    if len(tags) > MAX_TAGS:
        raise InvalidInput(f"at most {MAX_TAGS} tags are allowed, got {len(tags)}")
    seen: set[str] = set()
    clean: dict[str, str] = {}
    for key, value in tags.items():
        if not _KEY.fullmatch(key):
            raise InvalidInput(
                f"tag key {key!r} must be 1-64 letters, digits, '-' or '_', starting with a "
                "letter or digit (it becomes a header name)"
            )
        lowered = key.lower()
        if lowered.startswith(_RESERVED_PREFIXES) or lowered in _RESERVED_NAMES:
            raise InvalidInput(f"tag key {key!r} is reserved")
        if lowered in seen:
            raise InvalidInput(f"tag key {key!r} repeats another key (header names ignore case)")
        seen.add(lowered)
        if not isinstance(value, str) or not _VALUE.fullmatch(value):
            raise InvalidInput(
                f"tag {key!r} must have a string value of 1-200 visible ASCII characters without "
                "',', '=', ';', '\"' or spaces"
            )
        clean[key] = value
    return clean


def background_header(
    job_id: str, tags: Mapping[str, str], *, notify: bool, traceparent: str | None = None
) -> str:
    """The `erp-api-background` value for a job: a webhook carrying our id (and the job's trace
    context, when it has one), or none at all."""
    if not notify:
        return "none"
    pairs = [f"{JOB_ID_KEY}={job_id}", *(f"{k}={v}" for k, v in tags.items())]
    traceparent = valid_traceparent(traceparent)
    if traceparent is not None:
        pairs.append(f"{TRACEPARENT_KEY}={traceparent}")
    return "subscription:" + ",".join(pairs)


def valid_traceparent(value: str | None) -> str | None:
    """`value` if it is a W3C `traceparent` (lower-case hex, version 00's layout), else None:
    it comes back from outside in a header, so nothing else is believed."""
    if value is None:
        return None
    value = value.strip()
    return value if _TRACEPARENT.fullmatch(value) else None


def job_id_from_headers(headers: Mapping[str, str]) -> str | None:
    """Our job id from a webhook's headers (names compared without case)."""
    for name, value in headers.items():
        if name.lower() == JOB_ID_KEY:
            return value.strip() or None
    return None
