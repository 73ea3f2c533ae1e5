"""Reading a job's Visma state and recording its outcome (after a webhook, or when polling).

The same code serves both: a webhook only makes the read due now; the outcome always comes from
the state endpoint (DESIGN.md 1.5).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service import store
from service.domain import (
    OPEN_STATES,
    AlertPolicy,
    EventKind,
    Outcome,
    Resolver,
    decide_outcome,
    needs_content,
    parse_background_state,
)
from service.flows.clock import utcnow
from service.flows.outcomes import record_outcome
from service.visma import VismaClient, VismaError, VismaNotFound, VismaUnavailable

_OPEN = [s.value for s in OPEN_STATES]


@dataclass(frozen=True)
class ResolveSettings:
    """Pacing of state reads."""

    poll_after_seconds: float = 120.0
    # A job Visma still runs is read again after this, growing with each read.
    recheck_seconds: float = 5.0
    max_recheck_seconds: float = 3600.0
    # How long a claimed job stays ours before another worker may take it.
    lease_seconds: float = 120.0
    batch_size: int = 20
    concurrency: int = 4
    # How outcomes raise alerts (burst window).
    alerts: AlertPolicy = field(default_factory=AlertPolicy)

    def recheck_after(self, attempts: int) -> timedelta:
        seconds = self.recheck_seconds * (2 ** min(max(attempts - 1, 0), 16))
        return timedelta(seconds=min(seconds, self.max_recheck_seconds))


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
            states=_OPEN,
            lease_until=now + timedelta(seconds=settings.lease_seconds),
            limit=settings.batch_size,
        )
    limit = asyncio.Semaphore(settings.concurrency)

    async def one(job_id: str, visma_job_id: str | None) -> None:
        async with limit:
            await read_and_apply(sessions, visma, job_id, visma_job_id, settings)

    await asyncio.gather(*(one(job_id, visma_id) for job_id, visma_id in claimed))
    return len(claimed)


async def read_and_apply(
    sessions: async_sessionmaker[AsyncSession],
    visma: VismaClient,
    job_id: str,
    visma_job_id: str | None,
    settings: ResolveSettings,
) -> None:
    """Read one job's state from Visma (no transaction open), then record what it means."""
    if visma_job_id is None:
        await _record_no_visma_id(sessions, job_id)
        return
    try:
        data = await visma.background_state(visma_job_id)
        state = parse_background_state(data)
        content = None
        if needs_content(state):
            answer = await visma.background_content(visma_job_id)
            content = answer.body if answer else None
    except VismaError as exc:
        await _record_read_failure(sessions, job_id, exc, settings)
        return
    await _apply_state(sessions, job_id, data, decide_outcome(state, content), settings)


async def _apply_state(
    sessions: async_sessionmaker[AsyncSession],
    job_id: str,
    data: dict[str, Any],
    outcome: Outcome | None,
    settings: ResolveSettings,
) -> None:
    now = utcnow()
    async with sessions.begin() as session:
        job = await store.get_job(session, job_id, for_update=True)
        if job is None:
            return
        resolver = Resolver.WEBHOOK if job.last_webhook_at is not None else Resolver.POLL
        summary = {"status": data.get("status"), "statusCode": data.get("statusCode")}
        job.last_modified_at = now
        if outcome is None:
            job.next_check_at = now + settings.recheck_after(job.check_attempts)
            await store.add_event(
                session,
                job_id,
                kind=EventKind.STATE_READ,
                source=resolver,
                at=now,
                detail=summary,
            )
            return
        await record_outcome(
            session,
            job,
            outcome,
            source=resolver,
            at=now,
            detail=summary,
            resolved_by=resolver,
            alerts=settings.alerts,
        )


async def _record_read_failure(
    sessions: async_sessionmaker[AsyncSession],
    job_id: str,
    exc: VismaError,
    settings: ResolveSettings,
) -> None:
    now = utcnow()
    async with sessions.begin() as session:
        job = await store.get_job(session, job_id, for_update=True)
        if job is None or job.state not in _OPEN:
            return
        wait = settings.recheck_after(job.check_attempts)
        if isinstance(exc, VismaUnavailable) and exc.retry_after is not None:
            wait = max(wait, timedelta(seconds=exc.retry_after))
        job.next_check_at = now + wait
        job.last_modified_at = now
        await store.add_event(
            session,
            job_id,
            kind=EventKind.STATE_READ_FAILED,
            source="poll" if job.last_webhook_at is None else "webhook",
            at=now,
            detail={
                "message": exc.message,
                "httpStatus": exc.status,
                "notFound": isinstance(exc, VismaNotFound),
                "retryAt": _iso(job.next_check_at),
            },
        )


async def _record_no_visma_id(sessions: async_sessionmaker[AsyncSession], job_id: str) -> None:
    now = utcnow()
    async with sessions.begin() as session:
        job = await store.get_job(session, job_id, for_update=True)
        if job is None or job.state not in _OPEN:
            return
        # Nothing to read until a webhook (or the 202) tells us Visma's id.
        job.next_check_at = None
        job.last_modified_at = now
        await store.add_event(
            session,
            job_id,
            kind=EventKind.STATE_READ_FAILED,
            source="poll",
            at=now,
            detail={"message": "Visma's job id is not known yet; waiting for the webhook"},
        )


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
