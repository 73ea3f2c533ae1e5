"""Reading a job's Visma state and recording its outcome (after a webhook, or when polling).

The same code serves both: a webhook only makes the read due now; the outcome always comes from
the state endpoint, never from the webhook's body. A job Visma cannot tell us about within the
TTL becomes `expired`: outcome unknown, never pending forever. When to read, and when to give
up, are the core's decisions (`domain.lifecycle`); this module reads and records.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service import store, tracing
from service.domain import (
    OPEN_STATES,
    PROBLEM_STATE_MISMATCH,
    AlertPolicy,
    EventKind,
    JobState,
    KeptResult,
    Outcome,
    Pacing,
    Resolver,
    SubmittedRequest,
    decide_adoption,
    decide_expiry,
    decide_outcome,
    decide_read_failure,
    decide_unknown_submission,
    keep_result,
    needs_content,
    next_check,
    next_check_after_read,
    parse_background_state,
)
from service.flows.clock import utcnow
from service.flows.locking import locked_job
from service.flows.outcomes import record_outcome
from service.flows.submit import SubmitSettings, send_pending_job
from service.logs import FailureLog
from service.visma import (
    VismaClient,
    VismaDeferred,
    VismaError,
    VismaNotFound,
    VismaRejected,
    VismaUnavailable,
)

log = logging.getLogger(__name__)
_READ_FAILURES = FailureLog(log, "resolver: reading a job's state")

_OPEN = [s.value for s in OPEN_STATES]


@dataclass(frozen=True)
class ResolveSettings:
    """How the state-read worker works: the pacing of reads, its claims, its alerts."""

    pacing: Pacing = field(default_factory=Pacing)
    lease_seconds: float = 180.0
    """How long a claimed job stays this worker's before another may take it."""
    concurrency: int = 8
    alerts: AlertPolicy = field(default_factory=AlertPolicy)
    """How outcomes raise alerts (the burst window)."""
    max_result_bytes: int = 1_048_576
    """The most of a finished request's content kept (MAX_RESULT_BYTES)."""


async def resolve_due_jobs(
    sessions: async_sessionmaker[AsyncSession],
    visma: VismaClient,
    settings: ResolveSettings,
) -> int:
    """Claim the jobs whose state read is due and read each; returns how many were claimed."""
    now = utcnow()
    async with sessions.begin() as session:
        claimed = await store.claim_due_jobs(
            session,
            now=now,
            lease_until=now + timedelta(seconds=settings.lease_seconds),
            # Claim only what is read at once, so no claim waits in a queue while its lease
            # runs out (and another replica reads the same job).
            limit=settings.concurrency,
        )
    await asyncio.gather(*(_read_one(sessions, visma, job, settings) for job in claimed))
    return len(claimed)


async def _read_one(
    sessions: async_sessionmaker[AsyncSession],
    visma: VismaClient,
    claimed: store.ClaimedJob,
    settings: ResolveSettings,
) -> None:
    # A task of its own (gather): the job id bound here is on every line its read writes.
    structlog.contextvars.bind_contextvars(job_id=claimed.id)
    try:
        # In the trace that submitted the job: a read after its webhook and a poll alike.
        with tracing.span(
            "send job" if claimed.send_pending else "read job state",
            traceparent=claimed.traceparent,
            attributes={
                tracing.JOB_ID: claimed.id,
                tracing.VISMA_JOB_ID: claimed.visma_job_id,
                tracing.TENANT: claimed.tenant,
            },
        ):
            await read_and_apply(sessions, visma, claimed, settings)
    except Exception as exc:
        # The job stays claimed until its lease ends, then it is read again. One cause failing
        # every job is one line (with the first job's id), then a count now and then.
        _READ_FAILURES.failed(exc)
    else:
        if _READ_FAILURES.failing:
            _READ_FAILURES.succeeded()


async def read_and_apply(
    sessions: async_sessionmaker[AsyncSession],
    visma: VismaClient,
    claimed: store.ClaimedJob,
    settings: ResolveSettings,
) -> None:
    """Read one job's state from Visma (no transaction open), then record what it means; a
    job whose request waited for its company's rate budget is sent instead."""
    if claimed.send_pending:
        submit = SubmitSettings(pacing=settings.pacing, alerts=settings.alerts)
        await send_pending_job(sessions, visma, claimed.id, settings=submit)
        return
    if claimed.visma_job_id is None:
        await _adopt_or_wait(sessions, visma, claimed, settings)
        return
    try:
        data = await visma.background_state(claimed.visma_job_id, tenant=claimed.tenant)
    except VismaError as exc:
        await _record_read_failure(sessions, claimed, exc, settings)
        return
    await _resolve_from(sessions, visma, claimed, data, settings)


async def _resolve_from(
    sessions: async_sessionmaker[AsyncSession],
    visma: VismaClient,
    claimed: store.ClaimedJob,
    data: dict[str, Any],
    settings: ResolveSettings,
) -> None:
    """Record what a job's state (`data`, already read) means, reading its content if the
    outcome depends on it."""
    assert claimed.visma_job_id is not None
    state = parse_background_state(data)
    answer = None
    if needs_content(state) or (state.done and state.has_content and settings.max_result_bytes):
        # Read for every finished job with content: it is kept (`GET .../result`) past the
        # 24 hours Visma keeps it. Only a failure's outcome depends on it, so with
        # MAX_RESULT_BYTES=0 a success costs one request of the company's budget, not two.
        try:
            answer = await visma.background_content(claimed.visma_job_id, tenant=claimed.tenant)
        except VismaError as exc:
            if needs_content(state):
                await _record_read_failure(sessions, claimed, exc, settings)
                return
            log.warning("job %s: its content could not be read: %s", claimed.id, exc.message)
    outcome = decide_outcome(state, answer.body if answer else None)
    result = None
    if outcome is not None:
        result = keep_result(
            status=state.status_code or None,
            headers=state.response_headers,
            content_type=answer.content_type if answer else None,
            content=answer.body if answer else None,
            max_bytes=settings.max_result_bytes,
        )
    await _apply_state(sessions, claimed, data, outcome, settings, result=result)


MAX_CANDIDATES = 3
"""Visma job ids (from webhooks) checked for one job whose 202 never came, per pass."""


async def _adopt_or_wait(
    sessions: async_sessionmaker[AsyncSession],
    visma: VismaClient,
    claimed: store.ClaimedJob,
    settings: ResolveSettings,
) -> None:
    """A job with no Visma id (its 202 was lost): check the ids its webhooks named against
    Visma's own state, and take the first that is the job's; else wait, until the TTL."""
    candidates: list[str] = []
    async with sessions.begin() as session:
        job = await store.get_job(session, claimed.id)
        # Past submitted, or its 202 came meanwhile: then there is nothing to adopt.
        if job is not None and job.state == JobState.SUBMITTED and job.visma_job_id is None:
            request = SubmittedRequest(job.method, job.path, job.submitted_at)
            candidates = await store.linked_visma_ids(session, claimed.id, limit=MAX_CANDIDATES)
    for visma_job_id in candidates:
        try:
            data = await visma.background_state(visma_job_id, tenant=claimed.tenant)
        except VismaRejected as exc:  # 403: another company's job; 404/410: none Visma knows
            why: str | None = f"Visma answered {exc.status} for it"
        except VismaError as exc:
            await _record_read_failure(sessions, claimed, exc, settings)
            return
        else:
            why = decide_adoption(request, parse_background_state(data))
        if why is not None:
            async with sessions.begin() as session:
                await store.unlink_deliveries(
                    session,
                    job_id=claimed.id,
                    visma_job_id=visma_job_id,
                    problem=PROBLEM_STATE_MISMATCH.format(why=why),
                )
            continue
        if await _adopt(sessions, claimed.id, visma_job_id, data):
            adopted = dataclasses.replace(claimed, visma_job_id=visma_job_id)
            await _resolve_from(sessions, visma, adopted, data, settings)
            return
    await _wait_for_visma_id(sessions, claimed.id, settings)


async def _adopt(
    sessions: async_sessionmaker[AsyncSession],
    job_id: str,
    visma_job_id: str,
    data: dict[str, Any],
) -> bool:
    """Give the job the Visma job id Visma's state showed to be its own; False if it cannot
    take it (it moved on, or another job holds the id)."""
    now = utcnow()
    async with locked_job(sessions, job_id) as (session, job):
        if job is None or job.state != JobState.SUBMITTED or job.visma_job_id is not None:
            return False
        if await store.job_holding(session, visma_job_id) is not None:
            return False
        job.visma_job_id = visma_job_id
        job.state = JobState.ACCEPTED
        job.accepted_at = now
        job.last_modified_at = now
        await store.add_event(
            session,
            job_id,
            kind=EventKind.ADOPTED,
            source="webhook",
            at=now,
            detail={
                "vismaJobId": visma_job_id,
                "originalUri": data.get("originalUri"),
                "note": "no 202 came; the webhook named this Visma job and its state matches",
            },
        )
    return True


async def _apply_state(
    sessions: async_sessionmaker[AsyncSession],
    claimed: store.ClaimedJob,
    data: dict[str, Any],
    outcome: Outcome | None,
    settings: ResolveSettings,
    *,
    result: KeptResult | None = None,
) -> None:
    now = utcnow()
    job_id = claimed.id
    async with locked_job(sessions, job_id) as (session, job):
        if job is None:
            return
        resolver = _resolver(job)
        summary = {"status": data.get("status"), "statusCode": data.get("statusCode")}
        if outcome is None:
            job.last_modified_at = now
            job.next_check_at = next_check_after_read(
                settings.pacing,
                attempts=job.check_attempts,
                submitted_at=job.submitted_at,
                now=now,
                read_claimed_at=claimed.claimed_at,
                last_webhook_at=job.last_webhook_at,
            )
            await store.add_event(
                session, job_id, kind=EventKind.STATE_READ, source=resolver, at=now, detail=summary
            )
            return
        moved = await record_outcome(
            session,
            job,
            outcome,
            source=resolver,
            at=now,
            detail=summary,
            resolved_by=resolver,
            alerts=settings.alerts,
        )
        if moved and result is not None:
            await store.keep_result(
                session,
                job_id,
                status=result.status,
                headers=result.headers,
                content_type=result.content_type,
                content=result.content,
                size=result.size,
                truncated=result.truncated,
                at=now,
            )


async def _record_read_failure(
    sessions: async_sessionmaker[AsyncSession],
    claimed: store.ClaimedJob,
    exc: VismaError,
    settings: ResolveSettings,
) -> None:
    """Try again later; once the TTL has passed, the job is expired instead. An answer that
    never heals (403) ends the job now."""
    now = utcnow()
    job_id = claimed.id
    async with locked_job(sessions, job_id) as (session, job):
        if job is None or job.state not in _OPEN:
            return
        source = _resolver(job)
        if isinstance(exc, VismaDeferred) and now < settings.pacing.deadline(job.submitted_at):
            await _park_read(session, job, exc, now=now, settings=settings, source=source)
            return
        detail = {"vismaJobId": claimed.visma_job_id, "vismaHttpStatus": exc.status}
        ended = decide_read_failure(exc.status) or decide_expiry(
            settings.pacing,
            submitted_at=job.submitted_at,
            now=now,
            not_found=isinstance(exc, VismaNotFound),
            http_status=exc.status,
            message=exc.message,
        )
        if ended is not None:
            resolved_by = source if ended.state is JobState.FAILED else None
            await record_outcome(
                session,
                job,
                ended,
                source=source,
                at=now,
                detail=detail,
                resolved_by=resolved_by,
                alerts=settings.alerts,
            )
            return
        retry_after = exc.retry_after if isinstance(exc, VismaUnavailable) else None
        job.next_check_at = next_check(
            settings.pacing,
            attempts=job.check_attempts,
            submitted_at=job.submitted_at,
            now=now,
            at_least_seconds=retry_after,
        )
        job.last_modified_at = now
        await store.add_event(
            session,
            job_id,
            kind=EventKind.STATE_READ_FAILED,
            source=source,
            at=now,
            detail={
                "message": exc.message,
                "httpStatus": exc.status,
                # A young job Visma does not know yet (or any more) is retried, not final.
                "notFound": isinstance(exc, VismaNotFound),
                "retryAt": job.next_check_at.isoformat(),
            },
        )


async def _park_read(
    session: AsyncSession,
    job: store.Job,
    exc: VismaDeferred,
    *,
    now: datetime,
    settings: ResolveSettings,
    source: str,
) -> None:
    """The company's rate budget says wait: the read is due again when it allows (never past
    the deadline). A wait is not a read, so the polls do not grow apart for it."""
    job.check_attempts = max(0, job.check_attempts - 1)
    wait_until = now + timedelta(seconds=exc.retry_after)
    job.next_check_at = min(wait_until, settings.pacing.deadline(job.submitted_at))
    if exc.status != 429:
        return  # our own pacing: not worth a timeline entry per wait
    job.last_modified_at = now
    await store.add_event(
        session,
        job.id,
        kind=EventKind.READ_DEFERRED,
        source=source,
        at=now,
        detail={
            "message": exc.message,
            "tenant": exc.tenant,
            "retryAt": job.next_check_at.isoformat(),
        },
    )


async def _wait_for_visma_id(
    sessions: async_sessionmaker[AsyncSession], job_id: str, settings: ResolveSettings
) -> None:
    """No Visma id (the 202 was lost): wait for the webhook until the TTL, then expire."""
    now = utcnow()
    async with locked_job(sessions, job_id) as (session, job):
        if job is None or job.state not in _OPEN:
            return
        if job.visma_job_id is not None:
            # The 202 or a webhook named Visma's id while this claim was open: read it now.
            job.next_check_at = now
            return
        uncertain = await store.last_event(session, job_id, EventKind.SUBMIT_UNCERTAIN)
        expired = decide_unknown_submission(
            settings.pacing,
            submitted_at=job.submitted_at,
            now=now,
            why=(uncertain.detail or {}).get("message") if uncertain else None,
        )
        if expired is not None:
            await record_outcome(
                session, job, expired, source="poll", at=now, alerts=settings.alerts
            )
            return
        job.next_check_at = settings.pacing.deadline(job.submitted_at)


def _resolver(job: store.Job) -> str:
    return Resolver.WEBHOOK if job.last_webhook_at is not None else Resolver.POLL
