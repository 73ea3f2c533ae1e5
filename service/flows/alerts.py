"""Raising alerts, in the same transaction as the transition that causes them.

The caller has already decided that something moved (a job reached an outcome, a component's
or incident's current state changed); this module applies the noise windows (domain) and
writes the alert. Sending is the outbox's job (`flows/alert_outbox.py`), later and elsewhere.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from service import store
from service.domain import (
    AlertKind,
    AlertPolicy,
    BurstAction,
    FlapAction,
    Window,
    burst_key,
    burst_summary,
    burst_window_key,
    component_json,
    component_summary,
    component_window_key,
    decide_burst,
    decide_flap,
    incident_json,
    incident_summary,
    iso,
    issue_json,
    issue_summary,
    job_alert_kind,
    job_json,
    job_summary,
)
from service.flows.clock import utcnow

PENDING = "pending"
SUPPRESSED = "suppressed"
"""A held alert that its window made unnecessary (the component came back before it went out)."""


async def raise_job_alert(
    session: AsyncSession, job: store.Job, *, at: datetime, policy: AlertPolicy
) -> None:
    """The alert for a job that has just become failed, expired or rejected (if it is one)."""
    kind = job_alert_kind(job.state)
    if kind is None or not policy.job_failures:
        return
    error = job.error or {}
    fault_code = error.get("faultCode") if isinstance(error, dict) else None
    key = burst_key(state=job.state, fault_code=fault_code, http_status=job.http_status)
    row = await store.lock_window(session, burst_window_key(key))
    decision = decide_burst(
        await _window_of(session, row),
        subject=job.id,
        at=at,
        window_seconds=policy.burst_window_seconds,
    )
    _keep(row, decision.window)
    if decision.action is BurstAction.SINGLE:
        summary = job_summary(
            kind,
            method=job.method,
            path=job.path,
            error=error.get("message") if isinstance(error, dict) else None,
            fault_code=fault_code,
        )
        await _add(
            session,
            kind=kind,
            subject=f"job:{job.id}",
            summary=summary,
            at=at,
            subject_json={"job": job_json(job, default_tenant=policy.default_tenant)},
        )
        return
    window = decision.window
    await _hold(
        session,
        row,
        kind=AlertKind.JOBS_BURST,
        subject=f"jobs:{key}",
        summary=burst_summary(key, count=window.count, window_seconds=policy.burst_window_seconds),
        at=at,
        # The latest job stands for the burst: its error and hint are what a person acts on.
        subject_json={
            "jobs": {"ids": list(window.subjects), "count": window.count},
            "job": job_json(job, default_tenant=policy.default_tenant),
        },
    )


async def raise_issue_alert(
    session: AsyncSession,
    issue: store.Issue,
    *,
    reopened: bool,
    incident: store.StatusIncident | None,
    at: datetime,
) -> None:
    """The alert of an issue that a failure has just opened or reopened: once per transition
    (the failure that made it is the one that calls), never per job."""
    data = issue_json(issue, incident=incident)
    kind = AlertKind.ISSUE_REOPENED if reopened else AlertKind.ISSUE_OPENED
    await _add(
        session,
        kind=kind,
        subject=f"issue:{issue.id}",
        summary=issue_summary(data, reopened=reopened),
        at=at,
        subject_json={"issue": data},
    )


async def raise_component_alert(
    session: AsyncSession,
    component: store.StatusComponent,
    *,
    previous: str | None,
    policy: AlertPolicy,
    incident: tuple[store.StatusIncident, Sequence[store.StatusIncidentUpdate]] | None = None,
) -> None:
    """The alert (if any) for a watched component whose status just moved from `previous`;
    `incident`, an open incident on the component, goes along for its link and updates."""
    assert component.status is not None and component.updated_at is not None
    at = component.updated_at
    row = await store.lock_window(session, component_window_key(component.id))
    window = await _window_of(session, row)
    decision = decide_flap(
        window,
        previous=previous,
        new=component.status,
        at=at,
        window_seconds=policy.flap_window_seconds,
    )
    _keep(row, decision.window)
    name = component.name or component.id
    subject = f"component:{component.id}"
    body = {"component": component_json(component)}
    if incident is not None:
        body["incident"] = incident_json(*incident)
    if decision.action is FlapAction.RAISE:
        summary = component_summary(name, previous=previous, new=component.status)
        await _add(
            session,
            kind=AlertKind.COMPONENT_STATUS,
            subject=subject,
            summary=summary,
            at=at,
            subject_json=body,
        )
    elif decision.action is FlapAction.HOLD:
        # The trailing alert tells the change since the last alert that went out.
        summary = component_summary(
            name,
            previous=decision.window.told,
            new=component.status,
            changes=decision.window.count,
            window_seconds=policy.flap_window_seconds,
        )
        await _hold(
            session,
            row,
            kind=AlertKind.COMPONENT_STATUS,
            subject=subject,
            summary=summary,
            at=at,
            subject_json=body,
        )
    elif decision.action is FlapAction.DROP:
        await _drop_held(session, row)


async def raise_incident_alert(
    session: AsyncSession,
    incident: store.StatusIncident,
    updates: Sequence[store.StatusIncidentUpdate],
    *,
    previous: str | None,
) -> None:
    """The alert for an incident (or maintenance) that opened or changed status."""
    assert incident.status is not None and incident.updated_at is not None
    summary = incident_summary(
        incident.name or incident.id,
        previous=previous,
        status=incident.status,
        maintenance=incident.maintenance,
        impact=incident.impact,
        scheduled_for=incident.scheduled_for,
    )
    await _add(
        session,
        kind=AlertKind.INCIDENT_UPDATE,
        subject=f"incident:{incident.id}",
        summary=summary,
        at=incident.updated_at,
        subject_json={"incident": incident_json(incident, updates)},
    )


async def raise_diagnostic_alert(
    session: AsyncSession,
    *,
    kind: AlertKind,
    subject: str,
    summary: str,
    at: datetime,
    subject_json: dict[str, Any],
) -> None:
    """A diagnostics alert (`webhooks.silent`, `webhooks.bad_signatures`): the caller decided."""
    await _add(
        session, kind=kind, subject=subject, summary=summary, at=at, subject_json=subject_json
    )


async def _add(
    session: AsyncSession,
    *,
    kind: AlertKind,
    subject: str,
    summary: str,
    at: datetime,
    subject_json: dict[str, Any],
    due_at: datetime | None = None,
) -> store.Alert:
    alert_id = str(uuid.uuid4())
    now = utcnow()
    return await store.add_alert(
        session,
        store.Alert(
            id=alert_id,
            kind=kind,
            subject=subject,
            summary=summary,
            at=at,
            raised_at=now,
            body=_body(alert_id, kind, summary, at, subject_json),
            state=PENDING,
            due_at=due_at or now,
        ),
    )


async def _hold(
    session: AsyncSession,
    row: store.AlertWindow,
    *,
    kind: AlertKind,
    subject: str,
    summary: str,
    at: datetime,
    subject_json: dict[str, Any],
) -> None:
    """Create the window's trailing alert, due when the window closes, or bring it up to date."""
    assert row.until is not None
    held = await _held_alert(session, row)
    if held is None:
        held = await _add(
            session,
            kind=kind,
            subject=subject,
            summary=summary,
            at=at,
            subject_json=subject_json,
            due_at=row.until,
        )
        row.held_alert_id = held.id
        return
    held.state = PENDING
    held.summary = summary
    held.at = at
    held.due_at = row.until
    held.body = _body(held.id, kind, summary, at, subject_json)


async def _drop_held(session: AsyncSession, row: store.AlertWindow) -> None:
    held = await _held_alert(session, row)
    if held is not None:
        held.state = SUPPRESSED
        held.due_at = None


async def _held_alert(session: AsyncSession, row: store.AlertWindow) -> store.Alert | None:
    """The window's trailing alert while it has not gone out yet."""
    if row.held_alert_id is None:
        return None
    alert = await store.get_alert(session, row.held_alert_id, for_update=True)
    if alert is None or alert.state not in (PENDING, SUPPRESSED):
        return None
    return alert


async def _window_of(session: AsyncSession, row: store.AlertWindow) -> Window:
    held = await _held_alert(session, row)
    if row.held_alert_id is not None and held is None:
        # The trailing alert has gone out: its window is over, whatever the clocks say.
        return Window()
    return Window(
        until=row.until,
        told=row.told,
        count=row.count,
        subjects=tuple(str(s) for s in row.subjects or []),
        held=held is not None and held.state == PENDING,
    )


def _keep(row: store.AlertWindow, window: Window) -> None:
    if window.count == 1:
        # A new window: its trailing alert (if any) starts afresh.
        row.held_alert_id = None
    row.until = window.until
    row.told = window.told
    row.count = window.count
    row.subjects = list(window.subjects)


def _body(
    alert_id: str, kind: AlertKind, summary: str, at: datetime, subject_json: dict[str, Any]
) -> dict[str, Any]:
    """Alert JSON: the body JSON hooks receive."""
    return {"id": alert_id, "kind": kind.value, "summary": summary, "at": iso(at), **subject_json}
