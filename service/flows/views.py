"""The JSON shapes of DESIGN.md section 2 that both the API and the alert bodies show.

They live here, not in `web/`, so that alerts raised by the flows (a job that failed, a component
that went down) carry exactly what the API shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from service import store


def iso(value: datetime | None) -> str | None:
    """UTC ISO 8601 with a Z, as Visma writes timestamps."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def job_json(job: store.Job, events: Sequence[store.TimelineEntry] | None = None) -> dict[str, Any]:
    """Job JSON; with `events`, the single view's timeline too."""
    data: dict[str, Any] = {
        "id": job.id,
        "vismaJobId": job.visma_job_id,
        "state": job.state,
        "method": job.method,
        "path": job.path,
        "tags": job.tags or {},
        "httpStatus": job.http_status,
        "createdResourceId": job.created_resource_id,
        "error": job.error,
        "hint": job.hint,
        "resolvedBy": job.resolved_by,
        "notify": job.notify,
        "resultEtag": job.result_etag,
        "submittedAt": iso(job.submitted_at),
        "acceptedAt": iso(job.accepted_at),
        "finishedAt": iso(job.finished_at),
        "lastModifiedAt": iso(job.last_modified_at),
    }
    if events is not None:
        data["events"] = [
            {"at": iso(e.at), "kind": e.kind, "source": e.source, "detail": e.detail}
            for e in events
        ]
    return data


def component_json(
    component: store.StatusComponent,
    history: Sequence[store.StatusComponentUpdate] | None = None,
) -> dict[str, Any]:
    """Component JSON; with `history`, its updates newest first."""
    data: dict[str, Any] = {
        "id": component.id,
        "name": component.name,
        "groupId": component.group_id,
        "status": component.status,
        "updatedAt": iso(component.updated_at),
    }
    if history is not None:
        data["history"] = [
            {
                "id": u.id,
                "oldStatus": u.old_status,
                "newStatus": u.new_status,
                "at": iso(u.at),
                "receivedAt": iso(u.received_at),
                "applied": u.applied,
            }
            for u in history
        ]
    return data


def incident_json(
    incident: store.StatusIncident, updates: Sequence[store.StatusIncidentUpdate]
) -> dict[str, Any]:
    """Incident JSON, its updates newest first."""
    return {
        "id": incident.id,
        "name": incident.name,
        "status": incident.status,
        "impact": incident.impact,
        "shortlink": incident.shortlink,
        "components": [
            {"id": c.get("id"), "name": c.get("name")}
            for c in incident.components or []
            if isinstance(c, dict)
        ],
        "createdAt": iso(incident.created_at),
        "updatedAt": iso(incident.updated_at),
        "resolvedAt": iso(incident.resolved_at),
        "scheduledFor": iso(incident.scheduled_for),
        "scheduledUntil": iso(incident.scheduled_until),
        "updates": [
            {"id": u.id, "status": u.status, "body": u.body, "at": iso(u.at)} for u in updates
        ],
    }
