"""Scripted outcomes: what the next matching ERP call does, and what a job finishes with."""

from __future__ import annotations

import dataclasses
import json
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

OutcomeKind = Literal[
    "success", "bad_request", "no_license", "ipp_error", "failed", "reject", "action_accepted"
]
WebhookMode = Literal["send", "drop"]
JobStatus = Literal["Started", "Finished", "Failed"]

# `/v1/...` today; `/api/v1/...` and `/API/controller/api/v1/...` in older documents.
API_PREFIXES = ("", "/api", "/API/controller/api")
_API_PATH = re.compile(
    r"^(?P<prefix>(?:/API/controller)?/api)?/(?P<version>v[12])/(?P<resource>[^/]*)"
)

_ERP_PATH = re.compile(r"^(?:(?:/API/controller)?/api)?/v[12]/")

JSON_CONTENT_TYPE = "application/json; charset=utf-8"
DEFAULT_BAD_REQUEST_MESSAGE = "Invalid value for field 'x'"
NO_LICENSE_MESSAGE = "No license for this company."
NO_LICENSE_FAULT_CODE = "12027"
DEFAULT_IPP_MESSAGE = "An error has occurred."
DEFAULT_IPP_FAULT_CODE = "10000"
DEFAULT_FAILED_MESSAGE = "The background request failed to execute."
DEFAULT_REJECT_MESSAGE = "The request is invalid."
# A gateway's error page (nginx's, say): HTML, nothing of Visma's JSON error shape.
GATEWAY_PAGE = (
    "<html><head><title>{status} Gateway Error</title></head>"
    "<body><center><h1>{status} Gateway Error</h1></center></body></html>"
)


@dataclass(frozen=True)
class Outcome:
    """One scripted outcome; the next ERP call whose path matches `path` consumes it."""

    kind: OutcomeKind = "success"
    path: str | None = None
    """Regex, `re.search`ed against the request path; None matches every call."""
    times: int | None = 1
    """How many matching calls this outcome serves; None: all of them (a standing rule)."""
    status_code: int | None = None
    message: str | None = None
    fault_code: str | None = None
    location: str | None = None
    content: Any = None
    """Overrides the response body (any JSON); None keeps the kind's own body."""
    headers: dict[str, str] = field(default_factory=dict)
    """Extra response headers of the original request (shown in the state's responseHeaders)."""
    duration_seconds: float | None = None
    webhook: WebhookMode = "send"
    duplicate_webhook: bool = False
    webhook_before_accept: bool = False
    reject_status: int = 400
    """The status a `reject` outcome answers the submission with."""
    drop_accept: bool = False
    """Accept the call (the job runs, its webhook goes out) but lose the 202 on the way."""
    gateway_status: int | None = None
    """Accept the call (the job runs, its webhook goes out), but a gateway in front of the API
    answers the caller with this 5xx and an HTML page instead of the 202 (Visma's own error
    bodies are JSON; a proxy's are not)."""
    state_status: int | None = None
    """The job's state and content reads answer this status instead: 403 is Visma's answer
    when the job was made by another company or user."""

    def __post_init__(self) -> None:
        if self.kind not in get_args(OutcomeKind):
            raise ValueError(f"unknown outcome kind {self.kind!r}")
        if self.webhook not in get_args(WebhookMode):
            raise ValueError(f"webhook must be 'send' or 'drop', not {self.webhook!r}")
        if self.times is not None and self.times < 1:
            raise ValueError("times must be at least 1, or null for a standing rule")
        if self.path is not None:
            re.compile(self.path)  # fail when scripted, not at the call it was meant for
        if self.gateway_status is not None and not 500 <= self.gateway_status <= 599:
            raise ValueError("gateway_status must be a 5xx status")
        if self.state_status is not None and not 400 <= self.state_status <= 599:
            raise ValueError("state_status must be a 4xx or 5xx status")

    @classmethod
    def from_json(cls, data: object) -> Outcome:
        """Build an outcome from a JSON object; ValueError names what is wrong."""
        if not isinstance(data, Mapping):
            raise ValueError("an outcome must be a JSON object")
        unknown = sorted(str(key) for key in set(data) - set(_JSON_TYPES))
        if unknown:
            raise ValueError(f"unknown outcome fields: {', '.join(unknown)}")
        for key, value in data.items():
            expected = _JSON_TYPES[key]
            # bool is an int in Python, but `"times": true` is a mistake in JSON.
            if expected is not Any and (
                not isinstance(value, expected)
                or (isinstance(value, bool) and bool not in expected)
            ):
                raise ValueError(f"outcome field {key!r} has the wrong type")
        try:
            return cls(**{str(key): value for key, value in data.items()})
        except (TypeError, re.error) as exc:
            raise ValueError(str(exc)) from exc

    def to_json(self) -> dict[str, Any]:
        """The outcome as a JSON object (the same fields `from_json` reads)."""
        return dataclasses.asdict(self)


_OPTIONAL_STR = (str, type(None))
_OPTIONAL_INT = (int, type(None))
_JSON_TYPES: dict[str, Any] = {
    "kind": (str,),
    "path": _OPTIONAL_STR,
    "times": _OPTIONAL_INT,
    "status_code": _OPTIONAL_INT,
    "message": _OPTIONAL_STR,
    "fault_code": _OPTIONAL_STR,
    "location": _OPTIONAL_STR,
    "content": Any,
    "headers": (dict,),
    "duration_seconds": (int, float, type(None)),
    "webhook": (str,),
    "duplicate_webhook": (bool,),
    "webhook_before_accept": (bool,),
    "reject_status": (int,),
    "drop_accept": (bool,),
    "gateway_status": _OPTIONAL_INT,
    "state_status": _OPTIONAL_INT,
}


@dataclass
class _Entry:
    outcome: Outcome
    remaining: int | None


class OutcomeScript:
    """A FIFO of outcomes; a call takes the first whose path matches, else plain success."""

    def __init__(self) -> None:
        self._entries: list[_Entry] = []

    def add(self, outcomes: Iterable[Outcome]) -> None:
        """Queue outcomes behind the ones already waiting."""
        self._entries.extend(_Entry(outcome, outcome.times) for outcome in outcomes)

    def clear(self) -> None:
        """Forget every queued outcome and rule."""
        self._entries.clear()

    def take(self, path: str) -> Outcome:
        """The outcome for a call to `path`, used up by this call."""
        for index, entry in enumerate(self._entries):
            outcome = entry.outcome
            if outcome.path is not None and not re.search(outcome.path, path):
                continue
            if entry.remaining is not None:
                entry.remaining -= 1
                if entry.remaining == 0:
                    del self._entries[index]
            return outcome
        return Outcome()

    @property
    def pending(self) -> list[Outcome]:
        """The outcomes still waiting, in order."""
        return [entry.outcome for entry in self._entries]


@dataclass(frozen=True)
class JobResult:
    """What the original request returned once the job ran."""

    status: JobStatus
    status_code: int
    content: bytes | None = None
    content_type: str = JSON_CONTENT_TYPE
    headers: dict[str, str] = field(default_factory=dict)
    error_message: str | None = None


@dataclass(frozen=True)
class CallTarget:
    """The parts of an ERP request path that shape a result."""

    method: str
    path: str
    origin: str
    """The public base URL, without a trailing slash."""
    prefix: str
    """`""`, or `/api` (`/API/controller/api`) for the older layouts."""
    version: str
    resource: str

    @property
    def base(self) -> str:
        """Where this layout's paths start: origin plus prefix."""
        return self.origin + self.prefix

    @classmethod
    def parse(cls, method: str, path: str, *, public_base: str) -> CallTarget:
        """Split `/v1/customer/...` or `/api/v1/customer/...` into layout, version and resource."""
        match = _API_PATH.match(path)
        if match is None:
            raise ValueError(f"{path!r} is not an ERP API v1/v2 path")
        return cls(
            method=method.upper(),
            path=path,
            origin=public_base.rstrip("/"),
            prefix=match["prefix"] or "",
            version=match["version"],
            resource=match["resource"],
        )


def is_erp_path(path: str) -> bool:
    """True for an ERP API v1/v2 path in any layout (not the token endpoint, not /_sim/)."""
    return _ERP_PATH.match(path) is not None


def ipp_exception(message: str, fault_code: str) -> dict[str, str]:
    """An IPPException body as Visma.net returns it, with a fresh ExceptionMessageID."""
    return {
        "ExceptionType": "IPPException",
        "ExceptionMessage": message,
        "ExceptionFaultCode": fault_code,
        "ExceptionMessageID": f"{fault_code}_{uuid.uuid4()}",
        "ExceptionDetails": "",
    }


def dump_json(value: Any) -> bytes:
    """Compact JSON bytes, as the API and the dispatcher send them."""
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


def resolve(outcome: Outcome, target: CallTarget, *, next_number: Callable[[], int]) -> JobResult:
    """The result of running `target` under `outcome` (not used for `reject`)."""
    kind = outcome.kind
    content: Any
    if kind == "failed":
        # The state of a Failed job is undocumented: keep errorMessage set, no content, and a
        # 500 as the original status (a guess; only "not 2xx" matters to the service).
        return JobResult(
            status="Failed",
            status_code=outcome.status_code or 500,
            content=_content(outcome, None),
            headers=dict(outcome.headers),
            error_message=outcome.message or DEFAULT_FAILED_MESSAGE,
        )
    if kind == "bad_request":
        content = {"message": outcome.message or DEFAULT_BAD_REQUEST_MESSAGE}
        return _finished(outcome, outcome.status_code or 400, content)
    if kind == "no_license":
        # Visma does not document the status that comes with 12027. IPPExceptions are commonly
        # reported with 400 (a 12002 with "400 Bad Request" on Stack Overflow); 401/403 are also
        # plausible. Script status_code to rehearse those.
        content = ipp_exception(outcome.message or NO_LICENSE_MESSAGE, NO_LICENSE_FAULT_CODE)
        return _finished(outcome, outcome.status_code or 400, content)
    if kind == "ipp_error":
        # Also a guess: 400 as the default status for an arbitrary IPPException.
        content = ipp_exception(
            outcome.message or DEFAULT_IPP_MESSAGE, outcome.fault_code or DEFAULT_IPP_FAULT_CODE
        )
        return _finished(outcome, outcome.status_code or 400, content)
    if kind == "action_accepted":
        # Shape of Visma's action result DTO from memory (actionId/actionResult/errorInfo);
        # the service must only rely on the 202.
        content = {"actionId": str(uuid.uuid4()), "actionResult": "Queued", "errorInfo": None}
        return _finished(outcome, outcome.status_code or 202, content)
    return _success(outcome, target, next_number)


def _success(outcome: Outcome, target: CallTarget, next_number: Callable[[], int]) -> JobResult:
    headers = dict(outcome.headers)
    content: Any = None
    method = target.method
    if method == "POST" and "/action/" in target.path:
        # An action that completed at once: 200 with a result, no created resource.
        status_code = 200
        content = {"actionId": str(uuid.uuid4()), "actionResult": "Done", "errorInfo": None}
    elif method == "POST":
        status_code = 201
        headers.setdefault(
            "Location", f"{target.base}/{target.version}/{target.resource}/{next_number()}"
        )
    elif method in ("GET", "HEAD"):
        status_code = 200
        content = {}
    else:
        status_code = 204
    if outcome.location is not None:
        headers["Location"] = outcome.location
    return JobResult(
        status="Finished",
        status_code=outcome.status_code or status_code,
        content=_content(outcome, content),
        headers=headers,
    )


def _finished(outcome: Outcome, status_code: int, content: Any) -> JobResult:
    headers = dict(outcome.headers)
    if outcome.location is not None:
        headers["Location"] = outcome.location
    return JobResult(
        status="Finished",
        status_code=status_code,
        content=_content(outcome, content),
        headers=headers,
    )


def _content(outcome: Outcome, default: Any) -> bytes | None:
    value = outcome.content if outcome.content is not None else default
    return None if value is None else dump_json(value)


def reject_body(outcome: Outcome) -> bytes:
    """The body of a refused submission: an IPPException with a fault code, else a message."""
    if outcome.content is not None:
        return dump_json(outcome.content)
    message = outcome.message or DEFAULT_REJECT_MESSAGE
    if outcome.fault_code is not None:
        return dump_json(ipp_exception(message, outcome.fault_code))
    return dump_json({"message": message})
