"""Submitting a job: write it, send it to Visma, record the 202 or the refusal."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service import store
from service.domain import (
    AlertPolicy,
    EventKind,
    JobState,
    NotConfigured,
    Outcome,
    background_header,
    can_move,
    decide_rejection,
)
from service.flows.clock import utcnow
from service.flows.outcomes import record_outcome
from service.visma import SubmitAccepted, VismaClient, VismaError, VismaRejected, VismaUnavailable


@dataclass(frozen=True)
class JobRequest:
    """A validated request to run something in Visma as a background call."""

    method: str
    path: str
    body: bytes | None = None
    tags: dict[str, str] = field(default_factory=dict)
    if_match: str | None = None
    notify: bool = True


async def submit_job(
    sessions: async_sessionmaker[AsyncSession],
    visma: VismaClient,
    request: JobRequest,
    *,
    source: str,
    poll_after_seconds: float,
    alerts: AlertPolicy,
    job_id: str | None = None,
) -> str:
    """Create the job, send it, and record how Visma answered; returns the job id.

    The job row is committed before the request leaves, so a webhook that beats the 202 finds
    it. The request is never sent twice: a background call is not idempotent.
    """
    missing = visma.missing_settings()
    if missing:
        raise NotConfigured(f"cannot submit jobs: set {', '.join(missing)}")
    job_id = job_id or str(uuid.uuid4())
    now = utcnow()
    async with sessions.begin() as session:
        await store.add_job(
            session,
            store.Job(
                id=job_id,
                state=JobState.SUBMITTED,
                method=request.method,
                path=request.path,
                request_body=request.body,
                tags=request.tags,
                if_match=request.if_match,
                notify=request.notify,
                submitted_at=now,
                last_modified_at=now,
            ),
        )
        await store.add_event(
            session,
            job_id,
            kind=EventKind.SUBMITTED,
            source=source,
            at=now,
            detail={"method": request.method, "path": request.path},
        )
    header = background_header(job_id, request.tags, notify=request.notify)
    try:
        accepted = await visma.submit(
            request.method,
            request.path,
            body=request.body,
            background=header,
            if_match=request.if_match,
        )
    except VismaRejected as exc:
        rejection = decide_rejection(exc.status or 0, exc.body)
        await _record_rejection(sessions, job_id, rejection, alerts=alerts)
    except VismaUnavailable as exc:
        if exc.status is not None:  # Visma answered (429 until we gave up, or 5xx): refused
            rejection = decide_rejection(exc.status, exc.body)
            await _record_rejection(sessions, job_id, rejection, alerts=alerts)
        else:
            await _record_uncertain(sessions, job_id, exc)
    except VismaError as exc:
        await _record_uncertain(sessions, job_id, exc)
    else:
        await _record_accepted(sessions, job_id, accepted, poll_after_seconds=poll_after_seconds)
    return job_id


async def _record_accepted(
    sessions: async_sessionmaker[AsyncSession],
    job_id: str,
    accepted: SubmitAccepted,
    *,
    poll_after_seconds: float,
) -> None:
    now = utcnow()
    async with sessions.begin() as session:
        job = await store.get_job(session, job_id, for_update=True)
        if job is None:
            return
        job.accepted_at = now
        job.last_modified_at = now
        if job.visma_job_id is None:
            job.visma_job_id = accepted.visma_job_id
        moved = can_move(JobState(job.state), JobState.ACCEPTED)
        if moved:
            job.state = JobState.ACCEPTED
            # Polling fallback: read the state ourselves if no webhook has come by then. A
            # webhook that beat the 202 has already made the read due sooner; keep that.
            poll_at = now + timedelta(seconds=poll_after_seconds)
            if job.next_check_at is None or job.next_check_at > poll_at:
                job.next_check_at = poll_at
        await store.add_event(
            session,
            job_id,
            kind=EventKind.ACCEPTED,
            source="visma",
            at=now,
            detail={
                "vismaJobId": accepted.visma_job_id,
                "stateLocation": accepted.state_location,
                **({} if moved else {"note": f"the job was already {job.state}"}),
            },
        )


async def _record_rejection(
    sessions: async_sessionmaker[AsyncSession],
    job_id: str,
    outcome: Outcome,
    *,
    alerts: AlertPolicy,
) -> None:
    now = utcnow()
    async with sessions.begin() as session:
        job = await store.get_job(session, job_id, for_update=True)
        if job is None:
            return
        await record_outcome(session, job, outcome, source="visma", at=now, alerts=alerts)


async def _record_uncertain(
    sessions: async_sessionmaker[AsyncSession], job_id: str, exc: VismaError
) -> None:
    """The request may have reached Visma: leave the job submitted, waiting for its webhook."""
    now = utcnow()
    async with sessions.begin() as session:
        job = await store.get_job(session, job_id, for_update=True)
        if job is None:
            return
        job.last_modified_at = now
        await store.add_event(
            session,
            job_id,
            kind=EventKind.SUBMIT_UNCERTAIN,
            source="visma",
            at=now,
            detail={
                "message": exc.message,
                "note": "not re-sent automatically: the job waits for its webhook",
            },
        )
