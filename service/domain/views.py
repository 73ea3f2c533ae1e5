"""The JSON shapes the API shows and alerts carry: jobs with their timeline, status components
and incidents.

Each is a pydantic model read from any object with the right attributes (the store's rows, by
attribute name), written with the API's camelCase names. One definition renders an API
answer, an alert body and, from its JSON schema, the API's documentation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer
from pydantic.alias_generators import to_camel

from service.domain.results import shown_content


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
    callback_url: str | None = None
    idempotency_key: str | None = None
    """The Idempotency-Key the job was made with, if any."""
    issue_id: str | None = None
    """The issue (`/api/v1/issues/{id}`) the job's failure belongs to."""
    resent_from: str | None = None
    """The job this one sends again (`submit --resend`, or an issue's resend)."""
    resent_as: str | None = None
    """The job that sent this one again."""
    result_etag: str | None = None
    submitted_at: Time
    accepted_at: Time | None = None
    finished_at: Time | None = None
    last_modified_at: Time


class CallbackAttempt(View):
    """One try at POSTing a job's callback, and how the target answered."""

    at: Time
    status_code: int | None = None
    error: str | None = None


class CallbackStatus(View):
    """Where a job's callback stands: queued, sent, failed (given up) or gone (410)."""

    url: str
    state: str
    next_attempt_at: Time | None = None
    sent_at: Time | None = None
    attempts: list[CallbackAttempt] = Field(default_factory=list)


class JobDetail(Job):
    """A job with its timeline, oldest first (the single view), and its callback's attempts."""

    events: list[TimelineEntry]
    callback: CallbackStatus | None = None


class JobResult(View):
    """What a finished job's request returned (Visma's `/content` and the state's status and
    headers), kept after Visma forgets the job."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "jobId": "0190f0c4-8d4e-7a51-9a43-3e1f2b7c9d10",
                    "status": 201,
                    "headers": {"Location": "https://api.finance.visma.net/v1/customer/10042"},
                    "contentType": "application/json",
                    "content": '{"number": "10042"}',
                    "contentEncoding": "utf-8",
                    "size": 19,
                    "truncated": False,
                    "storedAt": "2026-12-02T13:05:00Z",
                }
            ]
        }
    )

    job_id: str
    status: int | None = None
    headers: Annotated[dict[str, str], BeforeValidator(_or_empty)] = Field(default_factory=dict)
    content_type: str | None = None
    content: str | None = None
    """The content as text (`utf-8`), or base64 when it is not UTF-8 text."""
    content_encoding: str = "utf-8"
    size: int = 0
    """The content's size as Visma returned it, in bytes."""
    truncated: bool = False
    """True when the content was larger than MAX_RESULT_BYTES and only its start is kept."""
    stored_at: Time


def result_json(result: object) -> dict[str, Any]:
    """JobResult JSON of a kept result row (`job_id`, `status`, `headers`, `content_type`,
    `content`, `size`, `truncated`, `stored_at`)."""
    raw = getattr(result, "content", None)
    truncated = bool(getattr(result, "truncated", False))
    content, encoding = shown_content(raw, truncated=truncated)
    fields = {
        name: getattr(result, name) for name in JobResult.model_fields if hasattr(result, name)
    }
    return JobResult.model_validate(
        {**fields, "content": content, "content_encoding": encoding}
    ).as_json()


def job_json(
    job: object,
    events: Sequence[object] | None = None,
    *,
    default_tenant: str | None = None,
    callback_url: str | None = None,
    callback: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Job JSON of a job row; with `events` (timeline entries), the single view's, which also
    shows `callback` (its delivery: `url`, `state`, ..., `attempts`) when there is one.

    A job stored before jobs named their company belongs to `default_tenant`."""
    view = Job.model_validate(job)
    if view.tenant is None and default_tenant:
        view = view.model_copy(update={"tenant": default_tenant})
    if callback_url is not None:
        view = view.model_copy(update={"callback_url": callback_url})
    if events is None:
        return view.as_json()
    entries = [TimelineEntry.model_validate(event) for event in events]
    status = CallbackStatus.model_validate(callback) if callback is not None else None
    return JobDetail(**dict(view), events=entries, callback=status).as_json()


class ComponentChange(View):
    """One update of a component's status, as it arrived."""

    id: str
    old_status: str | None = None
    new_status: str
    at: Time
    received_at: Time
    applied: bool
    """False when a newer update had already set the status (a late or repeated delivery)."""
    future_dated: bool = False
    """Its time was beyond STATUS_CLOCK_SKEW_SECONDS ahead of ours: ordered by `receivedAt`."""


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
    future_dated: Annotated[bool, BeforeValidator(bool)] = False
    """The newest delivery's time was beyond STATUS_CLOCK_SKEW_SECONDS ahead of ours:
    `updatedAt` is when we received it."""
    resolved_at: Time | None = None
    scheduled_for: Time | None = None
    scheduled_until: Time | None = None
    updates: list[IncidentUpdate]


def incident_json(incident: object, updates: Sequence[object]) -> dict[str, Any]:
    """Incident JSON of an incident row and its update rows."""
    fields = {name: getattr(incident, name) for name in Incident.model_fields if name != "updates"}
    return Incident.model_validate({**fields, "updates": updates}).as_json()
