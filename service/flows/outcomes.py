"""The one place a job reaches its outcome, so every path (webhook, poll, refusal, expiry)
records it the same way: fields, timeline event, and whatever follows a transition (its alert
and its callback, queued here in the same transaction, so once per transition and never per
delivery)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from service import metrics, store, tracing
from service.domain import AlertPolicy, EventKind, JobState, Outcome, Resolver, can_move
from service.flows.alerts import raise_job_alert
from service.flows.callbacks import queue_callback
from service.flows.diagnostics import check_silence
from service.flows.issues import record_failure

_EVENT_FOR = {
    JobState.SUCCEEDED: EventKind.SUCCEEDED,
    JobState.FAILED: EventKind.FAILED,
    JobState.EXPIRED: EventKind.EXPIRED,
    JobState.REJECTED: EventKind.REJECTED,
}


async def record_outcome(
    session: AsyncSession,
    job: store.Job,
    outcome: Outcome,
    *,
    source: str,
    at: datetime,
    detail: dict[str, Any] | None = None,
    resolved_by: str | None = None,
    alerts: AlertPolicy,
) -> bool:
    """Move `job` to `outcome.state` if that is forward; returns whether it moved.

    A move that would go backwards is kept in the timeline as `ignored`, never applied. A move
    to failed, expired or rejected is counted on its issue and raises its alert (grouped by
    `alerts`' burst window).
    """
    with tracing.span(
        "record outcome",
        attributes={tracing.JOB_ID: job.id, tracing.JOB_STATE: outcome.state.value},
    ) as span:
        moved = await _record(
            session,
            job,
            outcome,
            source=source,
            at=at,
            detail=detail,
            resolved_by=resolved_by,
            alerts=alerts,
        )
        tracing.set_attributes(
            span, tenant=job.tenant, visma_job_id=job.visma_job_id, vh_job_moved=moved
        )
        return moved


async def _record(
    session: AsyncSession,
    job: store.Job,
    outcome: Outcome,
    *,
    source: str,
    at: datetime,
    detail: dict[str, Any] | None,
    resolved_by: str | None,
    alerts: AlertPolicy,
) -> bool:
    detail = dict(detail or {})
    job.last_modified_at = at
    if not can_move(JobState(job.state), outcome.state):
        await store.add_event(
            session,
            job.id,
            kind=EventKind.IGNORED,
            source=source,
            at=at,
            detail={**detail, "outcome": outcome.state, "note": f"the job was already {job.state}"},
        )
        return False
    job.state = outcome.state
    job.http_status = outcome.http_status
    job.created_resource_id = outcome.created_resource_id
    job.error = outcome.error.as_json() if outcome.error else None
    job.hint = outcome.hint
    job.result_etag = outcome.result_etag
    job.resolved_by = resolved_by
    job.finished_at = at
    job.next_check_at = None
    if outcome.created_resource_id:
        detail["createdResourceId"] = outcome.created_resource_id
    if outcome.http_status is not None:
        detail.setdefault("httpStatus", outcome.http_status)
    if outcome.error:
        detail["error"] = outcome.error.message
    if outcome.note:
        detail["note"] = outcome.note
    await store.add_event(
        session, job.id, kind=_EVENT_FOR[outcome.state], source=source, at=at, detail=detail
    )
    await record_failure(session, job, outcome, at=at, policy=alerts)
    await raise_job_alert(session, job, at=at, policy=alerts)
    if resolved_by == Resolver.POLL and job.notify:
        await check_silence(session, company=job.tenant, at=at, policy=alerts)
    metrics.JOB_OUTCOME_SECONDS.labels(outcome.state).observe(
        max((at - job.submitted_at).total_seconds(), 0.0)
    )
    await queue_callback(session, job, at=at)
    return True
