"""What a status-page webhook says, and which updates may change current state.

status.visma.com speaks Atlassian Statuspage's webhook format: a delivery carries EITHER a
`component` with its `component_update`, OR an `incident` (scheduled maintenance is an incident
too) with all of its `incident_updates`. Deliveries can repeat and arrive out of order, so the
update's own timestamps decide: an older update never replaces a newer one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from service.domain.jsontext import parse_json


class ComponentStatus(StrEnum):
    OPERATIONAL = "operational"
    DEGRADED_PERFORMANCE = "degraded_performance"
    PARTIAL_OUTAGE = "partial_outage"
    MAJOR_OUTAGE = "major_outage"
    UNDER_MAINTENANCE = "under_maintenance"


class IncidentStatus(StrEnum):
    INVESTIGATING = "investigating"
    IDENTIFIED = "identified"
    MONITORING = "monitoring"
    RESOLVED = "resolved"
    POSTMORTEM = "postmortem"
    # Scheduled maintenance uses the same object with these statuses.
    SCHEDULED = "scheduled"
    IN_PROGRESS = "in_progress"
    VERIFYING = "verifying"
    COMPLETED = "completed"


COMPONENT_STATUSES = frozenset(s.value for s in ComponentStatus)
INCIDENT_STATUSES = frozenset(s.value for s in IncidentStatus)
MAINTENANCE_STATUSES = frozenset({"scheduled", "in_progress", "verifying", "completed"})
CLOSED_STATUSES = frozenset({"resolved", "postmortem", "completed"})

PROBLEM_NOT_JSON = "body is not JSON"
PROBLEM_NOT_OBJECT = "body is JSON but not an object"
PROBLEM_UNKNOWN_SHAPE = "body has neither component nor incident (not a Statuspage webhook)"
PROBLEM_COMPONENT = "component update without {what}"
PROBLEM_INCIDENT = "incident without {what}"
PROBLEM_COMPONENT_STATUS = "unknown component status {status!r}"
PROBLEM_INCIDENT_STATUS = "unknown incident status {status!r}"

EVENT_COMPONENT = "component_update"
EVENT_INCIDENT = "incident"


@dataclass(frozen=True)
class ComponentRef:
    """A component an incident names."""

    id: str
    name: str | None


@dataclass(frozen=True)
class ComponentChange:
    """A `component_update`: one component moved from `old_status` to `new_status` at `at`."""

    component_id: str
    name: str | None
    group_id: str | None
    update_id: str
    old_status: str | None
    new_status: str
    at: datetime


@dataclass(frozen=True)
class IncidentUpdate:
    """One entry of an incident's `incident_updates`."""

    id: str
    status: str
    body: str
    at: datetime


@dataclass(frozen=True)
class IncidentReport:
    """An incident (or scheduled maintenance) as one delivery shows it."""

    id: str
    name: str
    status: str
    impact: str | None
    shortlink: str | None
    created_at: datetime | None
    updated_at: datetime
    resolved_at: datetime | None
    scheduled_for: datetime | None
    scheduled_until: datetime | None
    components: tuple[ComponentRef, ...]
    updates: tuple[IncidentUpdate, ...]

    @property
    def is_maintenance(self) -> bool:
        """Scheduled maintenance rather than an unplanned incident."""
        return (
            self.impact == "maintenance"
            or self.scheduled_for is not None
            or self.status in MAINTENANCE_STATUSES
        )


StatusEvent = ComponentChange | IncidentReport


def event_name(event: StatusEvent | None) -> str | None:
    """The kind of event a delivery carried, as the inbox shows it."""
    if isinstance(event, ComponentChange):
        return EVENT_COMPONENT
    if isinstance(event, IncidentReport):
        return EVENT_INCIDENT
    return None


def parse_status_payload(body: bytes) -> tuple[StatusEvent | None, str | None]:
    """The event in a status-page webhook, or None and the problem that makes it unusable."""
    try:
        data = parse_json(body)
    except ValueError:
        return None, PROBLEM_NOT_JSON
    if not isinstance(data, dict):
        return None, PROBLEM_NOT_OBJECT
    if isinstance(data.get("component"), dict) or isinstance(data.get("component_update"), dict):
        return _component_change(data)
    if isinstance(data.get("incident"), dict):
        return _incident_report(data["incident"])
    return None, PROBLEM_UNKNOWN_SHAPE


def is_operational(status: str | None) -> bool:
    """Whether a component status counts as working (None: never seen, taken as working)."""
    return status is None or status == ComponentStatus.OPERATIONAL


def is_newer(at: datetime, current: datetime | None) -> bool:
    """Whether an update stamped `at` may replace state last set at `current`."""
    # Equal stamps are a repeat of the same update: nothing to change.
    return current is None or at > current


def ordering_time(
    stated: datetime, *, received_at: datetime, skew: timedelta
) -> tuple[datetime, bool]:
    """The time an update is ordered by, and whether its own time was refused as future.

    A time more than `skew` ahead of our clock would outrank every real update after it
    (one dated 2099 froze a component): such an update is ordered by when we received it.
    """
    if stated > received_at + skew:
        return received_at, True
    return stated, False


def parse_time(value: object) -> datetime | None:
    """A Statuspage timestamp (`2026-03-02T09:14:52.318Z`) as aware UTC, or None."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # year 1 with a positive offset has no UTC equivalent
        return None


def _component_change(data: Mapping[str, Any]) -> tuple[ComponentChange | None, str | None]:
    component = _mapping(data.get("component"))
    update = _mapping(data.get("component_update"))
    component_id = _text(update.get("component_id")) or _text(component.get("id"))
    new_status = _text(update.get("new_status")) or _text(component.get("status"))
    # A component without its update still says when it last changed.
    at = parse_time(update.get("created_at")) or parse_time(component.get("updated_at"))
    for value, what in ((component_id, "an id"), (new_status, "a status"), (at, "a timestamp")):
        if value is None:
            return None, PROBLEM_COMPONENT.format(what=what)
    assert component_id is not None and new_status is not None and at is not None
    if new_status not in COMPONENT_STATUSES:
        return None, PROBLEM_COMPONENT_STATUS.format(status=new_status)
    old_status = _text(update.get("old_status"))
    return (
        ComponentChange(
            component_id=component_id,
            name=_text(component.get("name")),
            group_id=_text(component.get("group_id")),
            update_id=_text(update.get("id")) or f"{component_id}@{at.isoformat()}",
            old_status=old_status if old_status in COMPONENT_STATUSES else None,
            new_status=new_status,
            at=at,
        ),
        None,
    )


def _incident_report(incident: Mapping[str, Any]) -> tuple[IncidentReport | None, str | None]:
    incident_id = _text(incident.get("id"))
    status = _text(incident.get("status"))
    updated_at = parse_time(incident.get("updated_at")) or parse_time(incident.get("created_at"))
    for value, what in ((incident_id, "an id"), (status, "a status"), (updated_at, "updated_at")):
        if value is None:
            return None, PROBLEM_INCIDENT.format(what=what)
    assert incident_id is not None and status is not None and updated_at is not None
    if status not in INCIDENT_STATUSES:
        return None, PROBLEM_INCIDENT_STATUS.format(status=status)
    raw_updates = _list(incident.get("incident_updates"))
    components: dict[str, ComponentRef] = {}
    for item in _list(incident.get("components")):
        _add_component(components, _text(item.get("id")), _text(item.get("name")))
    updates = []
    for item in raw_updates:
        # Affected components name the component by `code` (its id).
        for affected in _list(item.get("affected_components")):
            _add_component(components, _text(affected.get("code")), _text(affected.get("name")))
        update = _incident_update(item)
        if update is not None:
            updates.append(update)
    return (
        IncidentReport(
            id=incident_id,
            name=_text(incident.get("name")) or incident_id,
            status=status,
            impact=_text(incident.get("impact")),
            shortlink=_text(incident.get("shortlink")),
            created_at=parse_time(incident.get("created_at")),
            updated_at=updated_at,
            resolved_at=parse_time(incident.get("resolved_at")),
            scheduled_for=parse_time(incident.get("scheduled_for")),
            scheduled_until=parse_time(incident.get("scheduled_until")),
            components=tuple(components.values()),
            updates=tuple(sorted(updates, key=lambda u: u.at, reverse=True)),
        ),
        None,
    )


def _incident_update(item: Mapping[str, Any]) -> IncidentUpdate | None:
    update_id = _text(item.get("id"))
    status = _text(item.get("status"))
    at = parse_time(item.get("created_at")) or parse_time(item.get("display_at"))
    if update_id is None or status is None or at is None:
        return None
    body = item.get("body")
    return IncidentUpdate(
        id=update_id, status=status, body=_clean(body) if isinstance(body, str) else "", at=at
    )


def _add_component(
    found: dict[str, ComponentRef], component_id: str | None, name: str | None
) -> None:
    if component_id is None:
        return
    known = found.get(component_id)
    if known is None or (known.name is None and name is not None):
        found[component_id] = ComponentRef(id=component_id, name=name)


def _clean(text: str) -> str:
    # JSON may carry \u0000, which no text column of PostgreSQL can store.
    return text.replace("\x00", "")


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> Sequence[Mapping[str, Any]]:
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, dict)]


def _text(value: object) -> str | None:
    if isinstance(value, str):
        value = _clean(value).strip()
        return value or None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None
