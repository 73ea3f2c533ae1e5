"""A status-page delivery: kept in the inbox, applied to current state, alerts raised, all in
the caller's one transaction (so a `2xx` means every part of it is durable)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from service import store
from service.domain import (
    CLOSED_STATUSES,
    INCIDENT_STATUSES,
    AlertPolicy,
    ComponentChange,
    IncidentReport,
    event_name,
    is_newer,
    ordering_time,
    parse_status_payload,
)
from service.flows.alerts import raise_component_alert, raise_incident_alert

DELIVERY_KIND = "status"
OPEN_INCIDENT_STATUSES = tuple(sorted(INCIDENT_STATUSES - CLOSED_STATUSES))


@dataclass(frozen=True)
class StatusReceipt:
    """What became of one delivery."""

    delivery_id: str
    event: str | None
    changed: bool
    """Whether current state moved (False for a repeated, stale or unusable delivery)."""
    problem: str | None


async def record_status_delivery(
    session: AsyncSession,
    *,
    headers: dict[str, str],
    body: bytes,
    received_at: datetime,
    policy: AlertPolicy,
    clock_skew: timedelta,
) -> StatusReceipt:
    """Store the delivery; apply what it says if it is newer than what we know (a time more
    than `clock_skew` ahead of `received_at` is not believed: receipt orders it instead)."""
    event, problem = parse_status_payload(body)
    delivery_id = str(uuid.uuid4())
    await store.add_delivery(
        session,
        store.DeliveryRecord(
            id=delivery_id,
            kind=DELIVERY_KIND,
            # Statuspage sends no delivery id; a repeat is stored again and changes nothing.
            notification_id=None,
            event_id=event_name(event),
            received_at=received_at,
            headers=headers,
            body=body,
            # No signature exists for these: the secret token in the URL authenticated it.
            verified=True,
            problem=problem,
        ),
    )
    changed = False
    if isinstance(event, ComponentChange):
        changed = await _apply_component(
            session, event, received_at=received_at, policy=policy, clock_skew=clock_skew
        )
    elif isinstance(event, IncidentReport):
        changed = await _apply_incident(
            session, event, received_at=received_at, policy=policy, clock_skew=clock_skew
        )
    return StatusReceipt(
        delivery_id=delivery_id, event=event_name(event), changed=changed, problem=problem
    )


async def _apply_component(
    session: AsyncSession,
    change: ComponentChange,
    *,
    received_at: datetime,
    policy: AlertPolicy,
    clock_skew: timedelta,
) -> bool:
    component = await store.lock_component(session, change.component_id)
    at, future_dated = ordering_time(change.at, received_at=received_at, skew=clock_skew)
    newer = is_newer(at, component.updated_at)
    await store.add_component_update(
        session,
        {
            "id": change.update_id,
            "component_id": change.component_id,
            "old_status": change.old_status,
            "new_status": change.new_status,
            "at": change.at,
            "received_at": received_at,
            "applied": newer,
            "future_dated": future_dated,
        },
    )
    if not newer:
        return False
    # The first time we hear of a component, its update says where it came from.
    previous = component.status if component.updated_at is not None else change.old_status
    component.status = change.new_status
    component.updated_at = at
    component.name = change.name or component.name
    component.group_id = change.group_id or component.group_id
    if previous != change.new_status and policy.watches([(component.id, component.name)]):
        await raise_component_alert(
            session,
            component,
            previous=previous,
            policy=policy,
            incident=await _open_incident(session, component.id),
        )
    return True


async def _open_incident(
    session: AsyncSession, component_id: str
) -> tuple[store.StatusIncident, list[store.StatusIncidentUpdate]] | None:
    """The latest unresolved incident on this component: its link tells people where to look."""
    incidents, _ = await store.list_incidents(
        session, statuses=OPEN_INCIDENT_STATUSES, component=component_id, limit=1, offset=0
    )
    if not incidents:
        return None
    updates = await store.incident_updates(session, [incidents[0].id])
    return incidents[0], updates[incidents[0].id]


async def _apply_incident(
    session: AsyncSession,
    report: IncidentReport,
    *,
    received_at: datetime,
    policy: AlertPolicy,
    clock_skew: timedelta,
) -> bool:
    incident = await store.lock_incident(session, report.id)
    # Every delivery carries the incident's updates so far; keep the union, late ones too.
    await store.add_incident_updates(
        session,
        [
            {"id": u.id, "incident_id": report.id, "status": u.status, "body": u.body, "at": u.at}
            for u in report.updates
        ],
    )
    at, future_dated = ordering_time(report.updated_at, received_at=received_at, skew=clock_skew)
    if not is_newer(at, incident.updated_at):
        return False
    previous = incident.status
    # An update may list fewer components than the incident had: whether it concerns a
    # watched component is judged on every component it ever named.
    known = [(c["id"], c["name"]) for c in (incident.components or [])]
    incident.name = report.name
    incident.status = report.status
    incident.impact = report.impact
    incident.shortlink = report.shortlink
    incident.maintenance = report.is_maintenance
    incident.created_at = report.created_at
    incident.updated_at = at
    incident.future_dated = future_dated
    incident.resolved_at = report.resolved_at
    incident.scheduled_for = report.scheduled_for
    incident.scheduled_until = report.scheduled_until
    incident.components = [{"id": c.id, "name": c.name} for c in report.components]
    refs = [(c.id, c.name) for c in report.components]
    await store.set_incident_components(session, report.id, refs)
    if previous != report.status and policy.watches([*known, *refs]):
        updates = (await store.incident_updates(session, [report.id]))[report.id]
        await raise_incident_alert(session, incident, updates, previous=previous)
    return True
