"""Checks on what a team asks us to send to Visma."""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from service.domain.callbacks import validate_callback_url
from service.domain.correlation import validate_tags
from service.domain.errors import InvalidInput
from service.domain.jsontext import parse_json

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
MAX_PATH_LENGTH = 2048
"""Longest path (query included) a job may name: far above any Visma endpoint with its filters,
and short enough for every server and proxy on the way (many stop at 8 KiB for the whole line)."""
# Only v1 and v2 endpoints take the background header; the older layout put them under /api/.
_VERSIONED = re.compile(r"^/(api/)?v[12]/\S+$", re.IGNORECASE)
_BACKGROUND = re.compile(r"^/(api/)?v1/background(/|$)", re.IGNORECASE)
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})?")
# Unicode categories no path may carry: controls (C0, DEL, C1), invisible format characters
# (bidirectional overrides) and line separators; written as they are, spaces too (a space in a
# name is sent percent-encoded, %20).
_CONTROLS = frozenset({"Cc", "Cf", "Zl", "Zp"})
_UNPRINTABLE = _CONTROLS | {"Zs"}


def validate_method(method: str) -> str:
    """The HTTP method, upper-cased; raises InvalidInput for one Visma would not take."""
    upper = method.upper()
    if upper not in METHODS:
        raise InvalidInput(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    return upper


def validate_path(path: str) -> str:
    """A Visma API path such as `/v1/customer`; raises InvalidInput naming the problem.

    A path that a server on the way could read as another one is refused rather than
    rewritten: what is stored, shown and sent is exactly what the caller wrote. So the path's
    segments are checked as Visma's server will see them, percent-decoded: no `.` or `..`
    (`%2e%2e`), no `/` or `\\` hidden in a segment (`%2F`, `%5C`), no control characters, and no
    empty segment (`/v1//background/x`) that a server may fold away.
    """
    if len(path) > MAX_PATH_LENGTH:
        raise InvalidInput(f"path must be at most {MAX_PATH_LENGTH} characters, got {len(path)}")
    if "://" in path:
        raise InvalidInput("path is relative to VISMA_API_URL: give /v1/..., not a full URL")
    if any(_unprintable(c) for c in path) or "#" in path:
        raise InvalidInput("path must not contain spaces, control characters or '#'")
    if "\\" in path:
        raise InvalidInput("path must not contain backslashes ('\\'); Visma paths use '/'")
    if not _VERSIONED.match(path):
        raise InvalidInput(
            "path must start with /v1/ or /v2/ (only those endpoints run in the background)"
        )
    segments = [_decoded(segment) for segment in path.split("?", 1)[0].split("/")[1:]]
    if "" in segments[:-1]:  # a trailing '/' is the only empty segment allowed
        raise InvalidInput("path must not contain empty segments ('//')")
    if any(segment in (".", "..") for segment in segments):
        raise InvalidInput("path must not contain '.' or '..' segments, plain or percent-encoded")
    if any(("/" in s or "\\" in s or any(map(_control, s))) for s in segments):
        raise InvalidInput(
            "path must not percent-encode '/', '\\' or control characters in a segment"
        )
    if _BACKGROUND.match("/" + "/".join(segments)):
        raise InvalidInput("path must not be a /v1/background endpoint")
    return path


def _decoded(segment: str) -> str:
    """`segment` percent-decoded as a server decodes it; InvalidInput for a broken escape."""
    if "%" not in segment:
        return segment
    raw = bytearray()
    position = 0
    for escape in _ESCAPE.finditer(segment):
        if escape.group(1) is None:
            raise InvalidInput("path has a '%' that does not start an escape such as %2F")
        raw += segment[position : escape.start()].encode()
        raw.append(int(escape.group(1), 16))
        position = escape.end()
    raw += segment[position:].encode()
    return raw.decode("utf-8", errors="replace")


def _unprintable(char: str) -> bool:
    return unicodedata.category(char) in _UNPRINTABLE


def _control(char: str) -> bool:
    return unicodedata.category(char) in _CONTROLS


def validate_if_match(value: str) -> str:
    """An `If-Match` value (an ETag) that can travel as a header."""
    if not value or len(value) > 512 or any(not (0x20 <= ord(c) < 0x7F) for c in value):
        raise InvalidInput("ifMatch must be an ETag of up to 512 printable ASCII characters")
    return value


@dataclass(frozen=True)
class JobRequest:
    """A validated request to run something in Visma as a background call."""

    method: str
    path: str
    body: bytes | None = None
    tags: dict[str, str] = field(default_factory=dict)
    if_match: str | None = None
    notify: bool = True
    callback_url: str | None = None
    tenant: str | None = None
    """The company it is for; None: the default company."""


MAX_TENANT_CHARS = 64
"""Longest tenant id kept (`jobs.tenant`); Visma's are uuids."""
TENANT_NOT_CONFIGURED = "tenant {tenant!r} is not one of this service's companies (VISMA_TENANT_ID)"


def choose_tenant(asked: str | None, configured: Sequence[str]) -> str | None:
    """The company a submission is for: the one it names, else the default (the first
    configured); None when none is configured. InvalidInput for one not configured."""
    if asked is None:
        return configured[0] if configured else None
    if asked not in configured:
        raise InvalidInput(TENANT_NOT_CONFIGURED.format(tenant=asked[:MAX_TENANT_CHARS]))
    return asked


_In = TypeVar("_In")
_Out = TypeVar("_Out")

BODY_NOT_JSON = "request body must be a JSON object"


class JobCreate(BaseModel):
    """`POST /api/v1/jobs`."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {
                    "method": "POST",
                    "path": "/v1/customer",
                    "body": {"name": "Acme AS"},
                    "tags": {"orderRef": "SO-1"},
                }
            ]
        },
    )

    method: str
    path: str
    body: Any = None
    tags: dict[str, Any] = {}
    ifMatch: str | None = None
    notify: bool = True
    callbackUrl: str | None = None
    """Where the job's JSON is POSTed (Standard Webhooks signed) when the job ends."""
    tenant: str | None = None

    @field_validator("tenant")
    @classmethod
    def _tenant(cls, value: str | None) -> str | None:
        if value is not None and not 0 < len(value) <= MAX_TENANT_CHARS:
            raise ValueError(f"must be a tenant id of 1 to {MAX_TENANT_CHARS} characters")
        return value

    @field_validator("method")
    @classmethod
    def _method(cls, value: str) -> str:
        return _domain_check(validate_method, value)

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        return _domain_check(validate_path, value)

    @field_validator("ifMatch")
    @classmethod
    def _if_match(cls, value: str | None) -> str | None:
        return None if value is None else _domain_check(validate_if_match, value)

    @field_validator("callbackUrl")
    @classmethod
    def _callback_url(cls, value: str | None) -> str | None:
        return None if value is None else _domain_check(validate_callback_url, value)

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: dict[str, Any]) -> dict[str, str]:
        return _domain_check(validate_tags, value)

    def to_request(self) -> JobRequest:
        body = None
        if self.body is not None:
            body = json.dumps(self.body, separators=(",", ":"), ensure_ascii=False).encode()
        return JobRequest(
            method=self.method,
            path=self.path,
            body=body,
            tags=dict(self.tags),
            if_match=self.ifMatch,
            notify=self.notify,
            callback_url=self.callbackUrl,
            tenant=self.tenant,
        )


def parse_job_create(raw: bytes) -> JobCreate:
    """The submission in `raw`, or InvalidInput that says which field is wrong and why."""
    try:
        data = parse_json(raw)
    except ValueError:
        raise InvalidInput(f"{BODY_NOT_JSON}; it is not valid JSON") from None
    if not isinstance(data, dict):
        raise InvalidInput(BODY_NOT_JSON)
    try:
        return JobCreate.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput(validation_detail(exc)) from None


def validation_detail(exc: ValidationError) -> str:
    """Pydantic's errors as one line: `field: message; field: message`."""
    parts = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(p) for p in error["loc"]) or "body"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown field"
        parts.append(f"{where}: {message}")
    return "; ".join(parts)


def _domain_check(check: Callable[[_In], _Out], value: _In) -> _Out:
    # Domain checks raise InvalidInput; pydantic wants ValueError to report the field.
    try:
        return check(value)
    except InvalidInput as exc:
        raise ValueError(exc.detail) from None
