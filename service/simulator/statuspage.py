"""The simulated status page (status.visma.com): sends Statuspage-format webhooks.

It keeps its own components and incidents, so each webhook carries the component's old status,
or the incident's whole update history, as a real page would. Every payload it sent is kept, so
a test can send one again verbatim (a repeat) or send an update stamped earlier (out of order).

Facts we are not sure of, and the guess made here:
- the component names and ids of status.visma.com: made-up Visma-like ones;
- the page's `status_indicator` for a component status: Statuspage's own mapping, as we read it
  (degraded -> minor, partial outage -> major, major outage -> critical);
- retries: Statuspage does not document any; this page sends each webhook once and records the
  answer (the real page warns the subscriber by e-mail when it cannot deliver).
"""

from __future__ import annotations

import json
import secrets
import string
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

PAGE_ID = "vsm7c4st8pg1"
DOCUMENTATION_URL = "https://support.atlassian.com/statuspage/docs/enable-webhook-notifications/"
_INDICATOR = {
    "operational": ("none", "All Systems Operational"),
    "degraded_performance": ("minor", "Minor Service Outage"),
    "partial_outage": ("major", "Partial System Outage"),
    "major_outage": ("critical", "Major Service Outage"),
    "under_maintenance": ("maintenance", "Service Under Maintenance"),
}
_SEVERITY = ["operational", "under_maintenance", "degraded_performance", "partial_outage"]
_SEVERITY += ["major_outage"]


def new_id() -> str:
    """A Statuspage-like id: 12 lower-case letters and digits."""
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(12))


def stamp(at: datetime) -> str:
    """Statuspage's timestamp format: milliseconds and a Z."""
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class SimComponent:
    id: str
    name: str
    group_id: str | None = None
    status: str = "operational"
    position: int = 1
    created_at: datetime = field(default_factory=lambda: datetime(2024, 5, 14, 10, tzinfo=UTC))
    updated_at: datetime = field(default_factory=lambda: datetime(2024, 5, 14, 10, tzinfo=UTC))

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "status": self.status,
            "created_at": stamp(self.created_at),
            "updated_at": stamp(self.updated_at),
            "position": self.position,
            "description": None,
            "showcase": True,
            "page_id": PAGE_ID,
            "group_id": self.group_id,
        }


DEFAULT_COMPONENTS = (
    SimComponent(id="k8m2n4p6q8r0", name="Visma.net ERP API", group_id="g1h2j3k4l5m6", position=1),
    SimComponent(id="c3d4e5f6g7h8", name="Visma.net ERP UI", group_id="g1h2j3k4l5m6", position=2),
    SimComponent(id="w9x8y7z6v5u4", name="Webhook Dispatcher", group_id="g1h2j3k4l5m6", position=3),
    SimComponent(id="t1s2r3q4p5o6", name="Visma Connect", group_id=None, position=4),
)


@dataclass
class SimIncident:
    id: str
    name: str
    status: str
    impact: str
    created_at: datetime
    updated_at: datetime
    components: list[str]
    updates: list[dict[str, Any]] = field(default_factory=list)
    resolved_at: datetime | None = None
    monitoring_at: datetime | None = None
    scheduled_for: datetime | None = None
    scheduled_until: datetime | None = None


@dataclass
class StatusDelivery:
    """One webhook the page sent, and how the listener answered."""

    index: int
    url: str
    payload: dict[str, Any]
    status_code: int | None = None
    error: str | None = None
    at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "statusCode": self.status_code,
            "error": self.error,
            "at": self.at.isoformat(),
            "payload": self.payload,
        }


class StatusPage:
    """A status page that POSTs its webhooks to `url` (None: it keeps them without sending)."""

    def __init__(self, url: str | None, *, components: tuple[SimComponent, ...] = ()) -> None:
        self.url = url
        self.components = {
            c.id: SimComponent(**vars(c)) for c in (components or DEFAULT_COMPONENTS)
        }
        self.incidents: dict[str, SimIncident] = {}
        self.sent: list[StatusDelivery] = []
        self._client: httpx.AsyncClient | None = None
        self._last = datetime.now(UTC) - timedelta(seconds=1)

    def attach(self, client: httpx.AsyncClient | None) -> None:
        """Send with `client` (owned by the simulator's lifespan); None: stop sending."""
        self._client = client

    def component(self, ref: str) -> SimComponent:
        """A component by id or name; KeyError if the page has none such."""
        for component in self.components.values():
            if ref in (component.id, component.name):
                return component
        raise KeyError(f"no component {ref!r}; known: {', '.join(self.component_names())}")

    def component_names(self) -> list[str]:
        return [c.name for c in self.components.values()]

    async def set_component(
        self, ref: str, status: str, *, at: datetime | None = None
    ) -> StatusDelivery:
        """Move a component to `status` and send its `component_update`.

        With `at` earlier than the component's last change, the update is sent as a late one
        (out of order) and the page's own state is left as it was.
        """
        if status not in _INDICATOR:
            raise ValueError(f"unknown component status {status!r}")
        component = self.component(ref)
        when = at or self._tick()
        old_status = component.status
        late = at is not None and at <= component.updated_at
        shown = SimComponent(**{**vars(component), "status": status, "updated_at": when})
        if not late:
            component.status, component.updated_at = status, when
        payload = {
            **self._envelope(when),
            "component": shown.to_json(),
            "component_update": {
                "id": new_id(),
                "component_id": component.id,
                "old_status": old_status,
                "new_status": status,
                "created_at": stamp(when),
                "component_type": "Component",
            },
        }
        return await self.send(payload)

    async def set_incident(
        self,
        name: str,
        status: str,
        *,
        incident_id: str | None = None,
        body: str = "",
        impact: str = "minor",
        components: list[str] | None = None,
        component_status: str | None = None,
        scheduled_for: datetime | None = None,
        scheduled_until: datetime | None = None,
        at: datetime | None = None,
    ) -> StatusDelivery:
        """Open an incident, or add an update to one (by id), and send the whole incident."""
        when = at or self._tick()
        incident = self.incidents.get(incident_id) if incident_id else None
        if incident is None:
            incident = SimIncident(
                id=incident_id or new_id(),
                name=name,
                status=status,
                impact=impact,
                created_at=when,
                updated_at=when,
                components=[self.component(c).id for c in components or []],
                scheduled_for=scheduled_for,
                scheduled_until=scheduled_until,
            )
            self.incidents[incident.id] = incident
        incident.name = name or incident.name
        incident.status = status
        incident.updated_at = max(incident.updated_at, when)
        if components is not None:
            incident.components = [self.component(c).id for c in components]
        if status in ("resolved", "completed", "postmortem") and incident.resolved_at is None:
            incident.resolved_at = when
        if status == "monitoring":
            incident.monitoring_at = when
        affected = [
            {
                "code": cid,
                "name": self.components[cid].name,
                "old_status": self.components[cid].status,
                "new_status": component_status or self.components[cid].status,
            }
            for cid in incident.components
        ]
        update_id = new_id()
        incident.updates.insert(
            0,
            {
                "id": update_id,
                "incident_id": incident.id,
                "status": status,
                "body": body,
                "created_at": stamp(when),
                "updated_at": stamp(when),
                "display_at": stamp(when),
                "affected_components": affected,
                "deliver_notifications": True,
            },
        )
        incident.updates.sort(key=lambda u: str(u["created_at"]), reverse=True)
        return await self.send({**self._envelope(when), "incident": self._incident_json(incident)})

    async def schedule_maintenance(
        self,
        name: str,
        *,
        scheduled_for: datetime,
        scheduled_until: datetime,
        components: list[str],
        status: str = "scheduled",
        incident_id: str | None = None,
        body: str = "",
        at: datetime | None = None,
    ) -> StatusDelivery:
        """Scheduled maintenance: an incident with impact `maintenance` and its window."""
        return await self.set_incident(
            name,
            status,
            incident_id=incident_id,
            body=body,
            impact="maintenance",
            components=components,
            component_status="under_maintenance",
            scheduled_for=scheduled_for,
            scheduled_until=scheduled_until,
            at=at,
        )

    async def resend(self, index: int) -> StatusDelivery:
        """Send an earlier payload again, byte for byte the same JSON (a repeated delivery)."""
        return await self.send(self.sent[index].payload)

    async def send(self, payload: dict[str, Any]) -> StatusDelivery:
        """POST one payload to the listener and record the answer."""
        delivery = StatusDelivery(index=len(self.sent), url=self.url or "", payload=payload)
        self.sent.append(delivery)
        if self.url is None:
            return delivery
        if self._client is None:
            raise RuntimeError("the status page is not started (run the simulator's lifespan)")
        try:
            response = await self._client.post(
                self.url,
                content=json.dumps(payload).encode(),
                headers={"Content-Type": "application/json", "User-Agent": "Statuspage"},
            )
            delivery.status_code = response.status_code
        except httpx.HTTPError as exc:
            delivery.error = f"{type(exc).__name__}: {exc}"
        return delivery

    def _tick(self) -> datetime:
        # Strictly increasing stamps: two updates in one millisecond would look like a repeat.
        now = datetime.now(UTC)
        if now <= self._last + timedelta(milliseconds=1):
            now = self._last + timedelta(milliseconds=1)
        self._last = now
        return now

    def _envelope(self, when: datetime) -> dict[str, Any]:
        worst = max((c.status for c in self.components.values()), key=_SEVERITY.index)
        indicator, description = _INDICATOR[worst]
        return {
            "meta": {
                "unsubscribe": f"https://status.example.com/?unsubscribe={new_id()}",
                "documentation": DOCUMENTATION_URL,
                "generated_at": stamp(when),
            },
            "page": {
                "id": PAGE_ID,
                "status_indicator": indicator,
                "status_description": description,
            },
        }

    def _incident_json(self, incident: SimIncident) -> dict[str, Any]:
        def maybe(value: datetime | None) -> str | None:
            return stamp(value) if value else None

        return {
            "id": incident.id,
            "page_id": PAGE_ID,
            "name": incident.name,
            "status": incident.status,
            "impact": incident.impact,
            "created_at": stamp(incident.created_at),
            "updated_at": stamp(incident.updated_at),
            "monitoring_at": maybe(incident.monitoring_at),
            "resolved_at": maybe(incident.resolved_at),
            "scheduled_for": maybe(incident.scheduled_for),
            "scheduled_until": maybe(incident.scheduled_until),
            "shortlink": f"https://stspg.io/{incident.id[:7]}",
            "incident_updates": list(incident.updates),
            "components": [self.components[cid].to_json() for cid in incident.components],
        }
