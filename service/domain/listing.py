"""Query parameters of the list routes, parsed and checked (Visma's paging and date-filter
conventions: `pageSize`, `pageNumber`, `...DateTime` with a `...Condition`)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from service.domain.alerts import ALERT_KINDS
from service.domain.errors import InvalidInput
from service.domain.ids import decode_id, has_control_characters
from service.domain.issues import ISSUE_STATES
from service.domain.jobs import JobState
from service.domain.status import COMPONENT_STATUSES, INCIDENT_STATUSES
from service.domain.submission import MAX_TENANT_CHARS

MAX_PAGE_SIZE = 500
MAX_WHOLE_NUMBER = 999_999_999
_WHOLE_NUMBER = re.compile(r"[0-9]{1,9}")
DEFAULT_PAGE_SIZE = 50
CONDITIONS = (">", "<", ">=", "<=")
_PAGING = ("pageSize", "pageNumber")


@dataclass(frozen=True)
class Page:
    """A page request: `size` capped at MAX_PAGE_SIZE, `number` 1-based."""

    size: int = DEFAULT_PAGE_SIZE
    number: int = 1

    @property
    def offset(self) -> int:
        return (self.number - 1) * self.size


@dataclass(frozen=True)
class TimeCondition:
    """`<field><op><at>`, e.g. lastModifiedDateTime >= 2026-01-01."""

    op: str
    at: datetime


@dataclass(frozen=True)
class JobFilter:
    states: tuple[str, ...] = ()
    visma_job_id: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    last_modified: TimeCondition | None = None
    created: TimeCondition | None = None
    tenants: tuple[str, ...] = ()
    """Companies (any of); empty: all."""


@dataclass(frozen=True)
class DeliveryFilter:
    notification_id: str | None = None
    matched: bool | None = None
    kind: str | None = None
    event: str | None = None
    """The deliveries of one event id (`x-vwd-event-id`), exactly."""


DELIVERY_KINDS = ("visma", "status")


@dataclass(frozen=True)
class StatusFilter:
    """Filters of the status-page lists: statuses (any of) and a component id or name."""

    statuses: tuple[str, ...] = ()
    component: str | None = None


@dataclass(frozen=True)
class IssueFilter:
    states: tuple[str, ...] = ()
    tenants: tuple[str, ...] = ()


@dataclass(frozen=True)
class AlertFilter:
    kinds: tuple[str, ...] = ()


def parse_page(params: dict[str, str]) -> Page:
    """pageSize and pageNumber; a pageSize above the maximum is capped, as Visma does."""
    size = _positive_int(params, "pageSize", DEFAULT_PAGE_SIZE)
    number = _positive_int(params, "pageNumber", 1)
    return Page(size=min(size, MAX_PAGE_SIZE), number=number)


def parse_job_query(pairs: Iterable[tuple[str, str]]) -> tuple[JobFilter, Page]:
    """The filters and page of `GET /api/v1/jobs`."""
    params: dict[str, str] = {}
    tags: dict[str, str] = {}
    for key, value in pairs:
        if key.startswith("tag."):
            if has_control_characters(key) or has_control_characters(value):
                raise InvalidInput(f"query parameter {key!r} holds a control character")
            tag = key[4:]
            if not tag:
                raise InvalidInput("tag filter needs a key: tag.<key>=<value>")
            tags[tag] = value
            continue
        _once(params, key, value)
    _only(
        params,
        (
            "state",
            "tenant",
            "vismaJobId",
            "lastModifiedDateTime",
            "lastModifiedDateTimeCondition",
            "createdDateTime",
            "createdDateTimeCondition",
            *_PAGING,
        ),
        "tag.<key>",
    )
    states: tuple[str, ...] = ()
    if "state" in params:
        states = tuple(s.strip() for s in params["state"].split(",") if s.strip())
        valid = {s.value for s in JobState}
        for state in states:
            if state not in valid:
                raise InvalidInput(f"state {state!r} is not one of {', '.join(sorted(valid))}")
    job_filter = JobFilter(
        tenants=_tenants(params),
        states=states,
        visma_job_id=decode_id(params["vismaJobId"]) if params.get("vismaJobId") else None,
        tags=tags,
        last_modified=_time_condition(params, "lastModifiedDateTime"),
        created=_time_condition(params, "createdDateTime"),
    )
    return job_filter, parse_page(params)


def parse_delivery_query(pairs: Iterable[tuple[str, str]]) -> tuple[DeliveryFilter, Page]:
    """The filters and page of `GET /api/v1/deliveries`."""
    params: dict[str, str] = {}
    for key, value in pairs:
        _once(params, key, value)
    _only(params, ("notificationId", "matched", "kind", "event", *_PAGING))
    matched: bool | None = None
    if "matched" in params:
        raw = params["matched"].lower()
        if raw not in ("true", "false"):
            raise InvalidInput("matched must be true or false")
        matched = raw == "true"
    kind = params.get("kind")
    if kind is not None and kind not in DELIVERY_KINDS:
        raise InvalidInput(f"kind must be one of {', '.join(DELIVERY_KINDS)}")
    return (
        DeliveryFilter(
            notification_id=(
                decode_id(params["notificationId"]) if params.get("notificationId") else None
            ),
            matched=matched,
            kind=kind,
            event=parse_event_filter(params.get("event")),
        ),
        parse_page(params),
    )


MAX_EVENT_FILTER_CHARS = 128


def parse_event_filter(value: str | None) -> str | None:
    """The `event=` filter: an event id as Visma sends it (empty: no filter)."""
    if not value:
        return None
    if len(value) > MAX_EVENT_FILTER_CHARS or any(not c.isprintable() for c in value):
        raise InvalidInput(f"event must be at most {MAX_EVENT_FILTER_CHARS} printable characters")
    return value


def parse_component_query(pairs: Iterable[tuple[str, str]]) -> tuple[StatusFilter, Page]:
    """The filters and page of `GET /api/v1/status/components`."""
    return _status_query(pairs, COMPONENT_STATUSES)


def parse_incident_query(pairs: Iterable[tuple[str, str]]) -> tuple[StatusFilter, Page]:
    """The filters and page of `GET /api/v1/status/incidents`."""
    return _status_query(pairs, INCIDENT_STATUSES)


def parse_alert_query(pairs: Iterable[tuple[str, str]]) -> tuple[AlertFilter, Page]:
    """The filters and page of `GET /api/v1/alerts`."""
    params: dict[str, str] = {}
    for key, value in pairs:
        _once(params, key, value)
    _only(params, ("kind", *_PAGING))
    kinds = _one_of(params, "kind", ALERT_KINDS)
    return AlertFilter(kinds=kinds), parse_page(params)


def parse_issue_query(pairs: Iterable[tuple[str, str]]) -> tuple[IssueFilter, Page]:
    """The filters and page of `GET /api/v1/issues`."""
    params: dict[str, str] = {}
    for key, value in pairs:
        _once(params, key, value)
    _only(params, ("state", "tenant", *_PAGING))
    issue_filter = IssueFilter(
        states=_one_of(params, "state", ISSUE_STATES), tenants=_tenants(params)
    )
    return issue_filter, parse_page(params)


def parse_paging_query(pairs: Iterable[tuple[str, str]]) -> Page:
    """A page and nothing else (an issue's jobs)."""
    params: dict[str, str] = {}
    for key, value in pairs:
        _once(params, key, value)
    _only(params, _PAGING)
    return parse_page(params)


def _tenants(params: dict[str, str]) -> tuple[str, ...]:
    """A comma-separated company filter (any of)."""
    tenants = tuple(t.strip() for t in params.get("tenant", "").split(",") if t.strip())
    for tenant in tenants:
        if len(tenant) > MAX_TENANT_CHARS or has_control_characters(tenant):
            raise InvalidInput(f"tenant must be a tenant id of up to {MAX_TENANT_CHARS} characters")
    return tenants


def _status_query(
    pairs: Iterable[tuple[str, str]], statuses: frozenset[str]
) -> tuple[StatusFilter, Page]:
    params: dict[str, str] = {}
    for key, value in pairs:
        _once(params, key, value)
    _only(params, ("status", "component", *_PAGING))
    component = params.get("component", "").strip() or None
    return (
        StatusFilter(statuses=_one_of(params, "status", statuses), component=component),
        parse_page(params),
    )


def _one_of(params: dict[str, str], name: str, valid: frozenset[str]) -> tuple[str, ...]:
    """A comma-separated filter whose every value must be one of `valid`."""
    if name not in params:
        return ()
    values = tuple(v.strip() for v in params[name].split(",") if v.strip())
    for value in values:
        if value not in valid:
            raise InvalidInput(f"{name} {value!r} is not one of {', '.join(sorted(valid))}")
    return values


def parse_timestamp(value: str, name: str) -> datetime:
    """An ISO 8601 timestamp; one without a zone is taken as UTC."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(
            f"{name} must be an ISO 8601 date-time such as 2026-03-02T08:15:00Z"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # year 1 with a positive offset has no UTC equivalent
        raise InvalidInput(f"{name} is out of range") from None


def _time_condition(params: dict[str, str], name: str) -> TimeCondition | None:
    value = params.get(name)
    condition = params.get(f"{name}Condition")
    if value is None:
        if condition is not None:
            raise InvalidInput(f"{name}Condition needs {name}")
        return None
    op = (condition or ">=").strip()
    if op not in CONDITIONS:
        raise InvalidInput(f"{name}Condition must be one of {', '.join(CONDITIONS)}")
    return TimeCondition(op=op, at=parse_timestamp(value, name))


def _positive_int(params: dict[str, str], name: str, default: int) -> int:
    raw = params.get(name)
    if raw is None:
        return default
    # ASCII digits only ("²".isdigit() is true), and few enough for any database integer.
    if not _WHOLE_NUMBER.fullmatch(raw) or int(raw) < 1:
        raise InvalidInput(
            f"{name} must be a whole number from 1 to {MAX_WHOLE_NUMBER}, got {raw[:20]!r}"
        )
    return int(raw)


def _once(params: dict[str, str], key: str, value: str) -> None:
    if has_control_characters(key) or has_control_characters(value):
        raise InvalidInput(f"query parameter {key!r} holds a control character")
    if key in params:
        raise InvalidInput(f"query parameter {key!r} is given more than once")
    params[key] = value


def _only(params: dict[str, str], allowed: tuple[str, ...], *extra: str) -> None:
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        names = ", ".join((*allowed, *extra))
        raise InvalidInput(f"unknown query parameter {unknown[0]!r}; known: {names}")


MAX_WAIT_SECONDS = 60
"""The longest `?wait=` a client may ask for: below the idle timeouts of common proxies."""


UNTIL_FINISHED = "finished"


def parse_until(value: str | None) -> bool:
    """`?until=finished`: whether a wait answers only once the job has ended (not on its
    first change, such as the webhook's arrival a moment before the outcome)."""
    if value is None or value == "":
        return False
    if value != UNTIL_FINISHED:
        raise InvalidInput(f"until must be {UNTIL_FINISHED!r}, got {value[:40]!r}")
    return True


def parse_wait(value: str | None) -> int:
    """`?wait=N` (whole seconds, 0 to MAX_WAIT_SECONDS); 0 when absent."""
    if value is None or value == "":
        return 0
    if not _WHOLE_NUMBER.fullmatch(value) or int(value) > MAX_WAIT_SECONDS:
        raise InvalidInput(f"wait must be a whole number of seconds from 0 to {MAX_WAIT_SECONDS}")
    return int(value)
