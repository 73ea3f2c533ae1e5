"""Failures counted on their issue, in the transaction that records the outcome (never on
the webhook's path: the resolver and the other outcome paths call this), and a person's
moves of an issue (acknowledge, resolve, ignore)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from service import store
from service.domain import (
    CLOSED_STATUSES,
    REOPENED_FROM,
    AlertPolicy,
    IssueAction,
    IssueCause,
    NotFound,
    Outcome,
    issue_cause,
    move_issue,
)
from service.flows.alerts import raise_issue_alert
from service.flows.clock import utcnow

NO_ISSUE = "no issue {issue_id}"


async def record_failure(
    session: AsyncSession, job: store.Job, outcome: Outcome, *, at: datetime, policy: AlertPolicy
) -> store.CountedFailure | None:
    """Count the job's failure on the issue of its cause and name the issue on the job; the
    failure that opens (or reopens) the issue raises its alert. None for a success."""
    cause = issue_cause(
        tenant=job.tenant or policy.default_tenant or "",
        state=job.state,
        error=job.error,
        http_status=job.http_status,
        note=outcome.note,
        method=job.method,
        path=job.path,
    )
    if cause is None:
        return None
    # Without autoflush here: the job's outcome and its issue id then go out in one UPDATE at
    # the next flush, not one before these two statements (which read no job) and one after.
    with session.no_autoflush:
        incident = await _watched_incident(session, policy)
        counted = await _count(session, job, outcome, cause, incident=incident, at=at)
    job.issue_id = counted.issue_id
    if counted.opened:
        issue = await store.get_issue(session, counted.issue_id)
        assert issue is not None
        await raise_issue_alert(
            session, issue, reopened=counted.job_count > 1, incident=incident, at=at
        )
    return counted


async def _count(
    session: AsyncSession,
    job: store.Job,
    outcome: Outcome,
    cause: IssueCause,
    *,
    incident: store.StatusIncident | None,
    at: datetime,
) -> store.CountedFailure:
    """The failure counted on the issue of `cause` (made if new), in one upsert."""
    return await store.count_failure(
        session,
        {
            "id": str(uuid.uuid4()),
            "cause_key": cause.key,
            "tenant": cause.tenant,
            "kind": cause.kind,
            "fault_code": cause.fault_code,
            "http_status": cause.http_status,
            "expiry_reason": cause.expiry_reason,
            "method": cause.method,
            "path_template": cause.path_template,
            "message": (outcome.error.message if outcome.error else outcome.note or None),
            "hint": outcome.hint,
            "incident_id": incident.id if incident else None,
        },
        job_id=job.id,
        at=at,
        reopened_from=REOPENED_FROM,
    )


async def _watched_incident(
    session: AsyncSession, policy: AlertPolicy
) -> store.StatusIncident | None:
    """The newest open status-page incident on a watched component, if there is one."""
    for incident in await store.open_incidents(session, closed=sorted(CLOSED_STATUSES)):
        refs: Sequence[tuple[str, str | None]] = [
            (str(c.get("id")), c.get("name")) for c in incident.components or []
        ]
        if refs and policy.watches(refs):
            return incident
    return None


async def change_issue(session: AsyncSession, issue_id: str, action: IssueAction) -> store.Issue:
    """Acknowledge, resolve or ignore the issue (locked while it moves)."""
    issue = await store.get_issue(session, issue_id, for_update=True)
    if issue is None:
        raise NotFound(NO_ISSUE.format(issue_id=issue_id))
    state = move_issue(issue.id, issue.state, action)
    await store.set_issue_state(session, issue, state, at=utcnow())
    return issue
