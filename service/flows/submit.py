"""Submitting a job: write it, send it to Visma, record the 202 or the refusal."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import timedelta

import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service import store, tracing
from service.domain import (
    AlertPolicy,
    EventKind,
    IdempotencyKeyInUse,
    IdempotencyKeyReused,
    InvalidState,
    JobRequest,
    JobState,
    NotConfigured,
    NotFound,
    Outcome,
    Pacing,
    background_header,
    can_move,
    choose_tenant,
    decide_completed,
    decide_not_sent,
    decide_submit_failure,
    fingerprint,
    first_check,
    poll_at,
)
from service.flows.clock import utcnow
from service.flows.locking import locked_job
from service.flows.outcomes import record_outcome
from service.store import KeyClaim
from service.visma import (
    SubmitAccepted,
    VismaClient,
    VismaDeferred,
    VismaError,
    VismaNotConfigured,
    VismaNotSent,
    VismaRejected,
    VismaUnavailable,
)


@dataclass(frozen=True)
class SubmitSettings:
    """What a submission needs: when its job is read, and how its outcome alerts."""

    pacing: Pacing = field(default_factory=Pacing)
    alerts: AlertPolicy = field(default_factory=AlertPolicy)


async def submit_job(
    sessions: async_sessionmaker[AsyncSession],
    visma: VismaClient,
    request: JobRequest,
    *,
    source: str,
    settings: SubmitSettings,
    job_id: str | None = None,
    resent_from: str | None = None,
    idempotency_key: str | None = None,
) -> str:
    """Create the job, send it, and record how Visma answered; returns the job id.

    The job row is committed before the request leaves, so a webhook that beats the 202 finds
    it. The request is never sent twice: a background call is not idempotent. With an
    `idempotency_key`, the key's claim is written with the job (`store.add_keys`): a key that
    another request holds raises `sqlalchemy.IntegrityError` and nothing is written or sent
    (`submit_once` answers that request's job instead).
    """
    missing = visma.missing_settings()
    if missing:
        raise NotConfigured(f"cannot submit jobs: set {', '.join(missing)}")
    tenant = choose_tenant(request.tenant, visma.tenant_ids)
    job_id = job_id or str(uuid.uuid4())
    structlog.contextvars.bind_contextvars(job_id=job_id)
    tracing.set_attributes(tracing.current_span(), job_id=job_id, tenant=tenant)
    traceparent = tracing.current_traceparent()
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
                resent_from=resent_from,
                next_check_at=first_check(settings.pacing, submitted_at=now),
                tenant=tenant,
                idempotency_key=idempotency_key,
                traceparent=traceparent,
            ),
        )
        if idempotency_key is not None:
            claim = KeyClaim(tenant, idempotency_key, fingerprint(request, tenant=tenant), job_id)
            await store.add_keys(session, [claim], at=now)
        if request.callback_url is not None:
            await store.set_callback(session, job_id, request.callback_url)
        await store.add_event(
            session,
            job_id,
            kind=EventKind.SUBMITTED,
            source=source,
            at=now,
            detail={
                "method": request.method,
                "path": request.path,
                "tenant": tenant,
                **({"resentFrom": resent_from} if resent_from else {}),
            },
        )
    await send_request(
        sessions,
        visma,
        job_id,
        request,
        tenant=tenant,
        settings=settings,
        traceparent=traceparent,
    )
    return job_id


@dataclass(frozen=True)
class Submitted:
    """The job a submission answers with, and whether an earlier request made it."""

    job_id: str
    replayed: bool = False


async def submit_once(
    sessions: async_sessionmaker[AsyncSession],
    visma: VismaClient,
    request: JobRequest,
    *,
    key: str,
    source: str,
    settings: SubmitSettings,
    readers: async_sessionmaker[AsyncSession] | None = None,
) -> Submitted:
    """`submit_job` under an Idempotency-Key: the first request with the key makes the job; a
    repeat of the same request answers that job and sends nothing; another request with the
    key is refused (IdempotencyKeyReused).

    Two at once: the database lets one claim the key (on PostgreSQL the second insert waits for
    the first transaction, then fails); the other answers the first one's job. Only when that
    job is not there either (its transaction failed) is the answer "in use, retry". The key
    is looked up with `readers` when given (on SQLite they do not take the write lock).
    """
    async with (readers or sessions).begin() as session:
        found = await repeated_job(session, visma, request, key=key)
    if found is not None:
        return Submitted(found, replayed=True)
    try:
        job_id = await submit_job(
            sessions, visma, request, source=source, settings=settings, idempotency_key=key
        )
    except IntegrityError as exc:
        if not store.is_key_taken(exc):
            raise
        async with sessions.begin() as session:
            found = await repeated_job(session, visma, request, key=key)
        if found is None:
            raise IdempotencyKeyInUse(KEY_IN_USE) from None
        return Submitted(found, replayed=True)
    return Submitted(job_id)


KEY_IN_USE = "a request with this Idempotency-Key is still being processed; retry shortly"
KEY_REUSED = (
    "this Idempotency-Key was used for a different request (method, path, body, tags, tenant, "
    "notify, ifMatch or callbackUrl differ); use a new key for a new request"
)


async def repeated_job(
    session: AsyncSession, visma: VismaClient, request: JobRequest, *, key: str
) -> str | None:
    """The job an earlier request with this key made, for a repeat of that request; None when
    the key is free; IdempotencyKeyReused when it made a job from another request."""
    found = await repeated_job_row(session, visma, request, key=key)
    return None if found is None else found[0].id


async def repeated_job_row(
    session: AsyncSession, visma: VismaClient, request: JobRequest, *, key: str
) -> tuple[store.Job, str | None] | None:
    """The job (its row, with its callback URL, read with the key in one statement) an earlier
    request with this key made: what the API answers a repeat with. None when the key is free;
    IdempotencyKeyReused when it made a job from another request."""
    tenant = choose_tenant(request.tenant, visma.tenant_ids)
    found = await store.find_key_with_job(session, tenant, key)
    if found is None:
        return None
    claim, job, callback_url = found
    if claim.fingerprint != fingerprint(request, tenant=tenant):
        raise IdempotencyKeyReused(KEY_REUSED)
    return job, callback_url


async def send_pending_job(
    sessions: async_sessionmaker[AsyncSession],
    visma: VismaClient,
    job_id: str,
    *,
    settings: SubmitSettings,
) -> None:
    """Send a job whose request waited for its company's rate budget (the worker calls this
    once the wait is over). Visma never processed it (a 429 proves that), so it goes once."""
    async with sessions.begin() as session:
        job = await store.get_job(session, job_id)
        if job is None or not job.send_pending or job.state != JobState.SUBMITTED:
            return
        request = JobRequest(
            method=job.method,
            path=job.path,
            body=job.request_body,
            tags=dict(job.tags or {}),
            if_match=job.if_match,
            notify=job.notify,
        )
        tenant, traceparent = job.tenant, job.traceparent
    await send_request(
        sessions,
        visma,
        job_id,
        request,
        tenant=tenant,
        settings=settings,
        traceparent=traceparent,
    )


async def send_request(
    sessions: async_sessionmaker[AsyncSession],
    visma: VismaClient,
    job_id: str,
    request: JobRequest,
    *,
    tenant: str | None,
    settings: SubmitSettings,
    traceparent: str | None = None,
) -> None:
    """Send a stored job's request to Visma and record how it answered; with no transaction
    open while it is on its way. The job's `traceparent` goes with it in the subscription
    pairs, so its webhook joins the job's trace."""
    header = background_header(job_id, request.tags, notify=request.notify, traceparent=traceparent)
    try:
        answer = await visma.submit(
            request.method,
            request.path,
            body=request.body,
            background=header,
            if_match=request.if_match,
            tenant=tenant,
        )
    except VismaDeferred as exc:  # not sent, or refused unprocessed (429): it goes later
        await _record_deferred(sessions, job_id, exc)
        return
    except (VismaNotSent, VismaNotConfigured) as exc:
        # Never sent (no connection, no token; or a waiting job's company is no longer in
        # VISMA_TENANT_ID): refused, with a hint.
        outcome: Outcome | str = decide_not_sent(exc.message, status=exc.status)
    except (VismaRejected, VismaUnavailable) as exc:
        outcome = decide_submit_failure(exc.status, exc.body, message=exc.message)
    except VismaError as exc:  # a 202 we could not read: Visma has the job
        outcome = decide_submit_failure(None, exc.body, message=exc.message)
    else:
        if isinstance(answer, SubmitAccepted):
            await _record_accepted(sessions, job_id, answer, pacing=settings.pacing)
            return
        outcome = decide_completed(answer.status, location=answer.location)
    if isinstance(outcome, str):
        await _record_uncertain(sessions, job_id, outcome, pacing=settings.pacing)
    else:
        await _record_answer(sessions, job_id, outcome, alerts=settings.alerts)


async def _record_deferred(
    sessions: async_sessionmaker[AsyncSession], job_id: str, exc: VismaDeferred
) -> None:
    """The job stays `submitted`, its request unsent, until its company's budget allows: the
    worker sends it at `next_check_at`."""
    now = utcnow()
    async with locked_job(sessions, job_id) as (session, job):
        if job is None or job.state != JobState.SUBMITTED:
            return
        job.send_pending = True
        job.next_check_at = now + timedelta(seconds=exc.retry_after)
        job.last_modified_at = now
        await store.add_event(
            session,
            job_id,
            kind=EventKind.SEND_DEFERRED,
            source="visma" if exc.status == 429 else "budget",
            at=now,
            detail={
                "message": exc.message,
                "tenant": exc.tenant,
                "waitSeconds": round(exc.retry_after, 3),
                "sendAt": job.next_check_at.isoformat(),
            },
        )


async def resend_job(
    sessions: async_sessionmaker[AsyncSession],
    visma: VismaClient,
    job_id: str,
    *,
    source: str,
    settings: SubmitSettings,
) -> str:
    """Send a job's request again, deliberately, as a new job linked to the old one.

    Refused while Visma has the job (accepted) or after it succeeded: a background call is not
    idempotent, and re-sending could create the invoice twice.
    """
    new_id = str(uuid.uuid4())
    async with locked_job(sessions, job_id) as (session, old):
        if old is None:
            raise NotFound(f"no job with id {job_id!r}")
        if old.state in (JobState.ACCEPTED, JobState.SUCCEEDED):
            raise InvalidState(
                f"job {job_id} is {old.state}: Visma has it, so re-sending could do the work twice"
            )
        request = JobRequest(
            method=old.method,
            path=old.path,
            body=old.request_body,
            tags=dict(old.tags or {}),
            if_match=old.if_match,
            notify=old.notify,
            tenant=old.tenant,
            callback_url=(await store.callback_urls(session, [job_id])).get(job_id),
        )
        old.last_modified_at = utcnow()
        await store.add_event(
            session,
            job_id,
            kind=EventKind.RESENT,
            source=source,
            at=old.last_modified_at,
            detail={"newJobId": new_id},
        )
    return await submit_job(
        sessions,
        visma,
        request,
        source=source,
        settings=settings,
        job_id=new_id,
        resent_from=job_id,
    )


async def _record_accepted(
    sessions: async_sessionmaker[AsyncSession],
    job_id: str,
    accepted: SubmitAccepted,
    *,
    pacing: Pacing,
) -> None:
    now = utcnow()
    async with locked_job(sessions, job_id) as (session, job):
        if job is None:
            return
        job.accepted_at = now
        job.last_modified_at = now
        if job.send_pending:  # sent after a wait: its claim's lease is no check time
            job.send_pending = False
            job.next_check_at = None
        if job.visma_job_id is None:
            job.visma_job_id = accepted.visma_job_id
        moved = can_move(JobState(job.state), JobState.ACCEPTED)
        if moved:
            job.state = JobState.ACCEPTED
            job.next_check_at = poll_at(
                pacing, accepted_at=now, next_check=job.next_check_at, notify=job.notify
            )
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


async def _record_answer(
    sessions: async_sessionmaker[AsyncSession],
    job_id: str,
    outcome: Outcome,
    *,
    alerts: AlertPolicy,
) -> None:
    now = utcnow()
    async with locked_job(sessions, job_id) as (session, job):
        if job is None:
            return
        job.send_pending = False
        await record_outcome(session, job, outcome, source="visma", at=now, alerts=alerts)


async def _record_uncertain(
    sessions: async_sessionmaker[AsyncSession], job_id: str, why: str, *, pacing: Pacing
) -> None:
    """The request may have reached Visma: leave the job submitted, waiting for its webhook.

    Its webhook still finds it (vh-job-id) and names Visma's id (which the resolver checks
    before the job takes it); without one it expires at its backstop check, saying why.
    """
    now = utcnow()
    async with locked_job(sessions, job_id) as (session, job):
        if job is None:
            return
        job.last_modified_at = now
        if job.send_pending:  # sent after a wait: back to its backstop at the deadline
            job.send_pending = False
            job.next_check_at = first_check(pacing, submitted_at=job.submitted_at)
        await store.add_event(
            session,
            job_id,
            kind=EventKind.SUBMIT_UNCERTAIN,
            source="visma",
            at=now,
            detail={
                "message": why,
                "note": "not re-sent automatically: the job waits for its webhook",
            },
        )
