"""The JSON shapes the API shows and alerts carry: jobs with their timeline, status components
and incidents.

Each is a pydantic model read from any object with the right attributes (the store's rows, by
attribute name), written with the API's camelCase names. One definition renders an API
answer, an alert body and, from its JSON schema, the API's documentation.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer
from pydantic.alias_generators import to_camel


def iso(value: datetime | None) -> str | None:
    """UTC ISO 8601 with a Z, as Visma writes timestamps."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


Time = Annotated[datetime, PlainSerializer(iso, return_type=str)]


def _or_empty(value: object) -> object:
    return {} if value is None else value


class View(BaseModel):
    """A shape the API shows: read from attributes or a mapping, written in camelCase."""

    model_config = ConfigDict(
        from_attributes=True,
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        frozen=True,
    )

    def as_json(self) -> dict[str, Any]:
        """The JSON object (plain values) this view shows."""
        return self.model_dump(mode="json")


class JobError(View):
    """What Visma said went wrong, parsed (see `visma_errors`)."""

    type: str | None = None
    message: str
    fault_code: str | None = None
    message_id: str | None = None
    body: str | None = None


class TimelineEntry(View):
    """One entry of a job's timeline: what happened, when, and who said so."""

    at: Time
    kind: str
    source: str
    detail: Annotated[dict[str, Any], BeforeValidator(_or_empty)] = Field(default_factory=dict)


class Job(View):
    """A job as lists show it."""

    id: str
    visma_job_id: str | None = None
    tenant: str | None = None
    """The company (Visma tenant) the job is for."""
    state: str
    method: str
    path: str
    tags: Annotated[dict[str, str], BeforeValidator(_or_empty)] = Field(default_factory=dict)
    http_status: int | None = None
    created_resource_id: str | None = None
    error: JobError | None = None
    hint: str | None = None
    resolved_by: str | None = None
    notify: bool
    result_etag: str | None = None
    submitted_at: Time
    accepted_at: Time | None = None
    finished_at: Time | None = None
    last_modified_at: Time


class JobDetail(Job):
    """A job with its timeline, oldest first (the single view)."""

    events: list[TimelineEntry]


def job_json(
    job: object, events: Sequence[object] | None = None, *, default_tenant: str | None = None
) -> dict[str, Any]:
    """Job JSON of a job row; with `events` (timeline entries), the single view's.

    A job stored before jobs named their company belongs to `default_tenant`."""
    view = Job.model_validate(job)
    if view.tenant is None and default_tenant:
        view = view.model_copy(update={"tenant": default_tenant})
    if events is None:
        return view.as_json()
    entries = [TimelineEntry.model_validate(event) for event in events]
    return JobDetail(**dict(view), events=entries).as_json()


class ComponentChange(View):
    """One update of a component's status, as it arrived."""

    id: str
    old_status: str | None = None
    new_status: str
    at: Time
    received_at: Time
    applied: bool
    """False when a newer update had already set the status (a late or repeated delivery)."""


class Component(View):
    """A status-page component and its current status (set by the newest update seen)."""

    id: str
    name: str | None = None
    group_id: str | None = None
    status: str | None = None
    updated_at: Time | None = None


class ComponentDetail(Component):
    """A component with its updates, newest first."""

    history: list[ComponentChange]


def component_json(component: object, history: Sequence[object] | None = None) -> dict[str, Any]:
    """Component JSON of a component row; with `history`, its updates too."""
    view = Component.model_validate(component)
    if history is None:
        return view.as_json()
    changes = [ComponentChange.model_validate(update) for update in history]
    return ComponentDetail(**dict(view), history=changes).as_json()


class ComponentRef(View):
    id: str | None = None
    name: str | None = None


class IncidentUpdate(View):
    id: str
    status: str
    body: str
    at: Time


def _component_refs(value: object) -> object:
    # Stored as a JSON list of {"id", "name"}; anything else in it is not a component.
    return [c for c in value or [] if isinstance(c, dict)] if isinstance(value, list) else []


class Incident(View):
    """A status-page incident or scheduled maintenance, with its updates newest first."""

    id: str
    name: str | None = None
    status: str | None = None
    impact: str | None = None
    shortlink: str | None = None
    components: Annotated[list[ComponentRef], BeforeValidator(_component_refs)]
    created_at: Time | None = None
    updated_at: Time | None = None
    resolved_at: Time | None = None
    scheduled_for: Time | None = None
    scheduled_until: Time | None = None
    updates: list[IncidentUpdate]


def incident_json(incident: object, updates: Sequence[object]) -> dict[str, Any]:
    """Incident JSON of an incident row and its update rows."""
    fields = {name: getattr(incident, name) for name in Incident.model_fields if name != "updates"}
    return Incident.model_validate({**fields, "updates": updates}).as_json()
