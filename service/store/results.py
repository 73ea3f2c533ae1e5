"""Kept results of finished jobs, and per-job callback URLs. Functions take a session and never
commit."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from service.store.models import AlertAttempt, AlertDelivery, Job, JobCallback, JobResult


async def keep_result(
    session: AsyncSession,
    job_id: str,
    *,
    status: int | None,
    headers: Mapping[str, str],
    content_type: str | None,
    content: bytes | None,
    size: int,
    truncated: bool,
    at: datetime,
) -> None:
    """Store what the job's request returned (a job has one result: the first stays)."""
    if await session.get(JobResult, job_id) is not None:
        return
    session.add(
        JobResult(
            job_id=job_id,
            status=status,
            headers=dict(headers),
            content_type=content_type,
            content=content,
            size=size,
            truncated=truncated,
            stored_at=at,
        )
    )


async def get_result(session: AsyncSession, job_id: str) -> JobResult | None:
    """The job's kept result, if it has one."""
    if "\x00" in job_id:
        return None
    return await session.get(JobResult, job_id)


async def set_callback(session: AsyncSession, job_id: str, url: str) -> None:
    """Where the job's JSON goes when it ends."""
    session.add(JobCallback(job_id=job_id, url=url))


async def callback_urls(session: AsyncSession, job_ids: Sequence[str]) -> dict[str, str]:
    """The callback URL of each of these jobs that has one."""
    if not job_ids:
        return {}
    rows = await session.execute(
        select(JobCallback.job_id, JobCallback.url).where(JobCallback.job_id.in_(job_ids))
    )
    return {job_id: url for job_id, url in rows.all()}


async def job_with_callback_url(
    session: AsyncSession, job_id: str
) -> tuple[Job, str | None] | None:
    """The job and its callback URL (None when it has none) in one read; None if no such job."""
    if "\x00" in job_id:
        return None  # no row holds a NUL (PostgreSQL text cannot), and asyncpg refuses one
    query = (
        select(Job, JobCallback.url)
        .outerjoin(JobCallback, JobCallback.job_id == Job.id)
        .where(Job.id == job_id)
    )
    row = (await session.execute(query)).one_or_none()
    return None if row is None else (row[0], row[1])


async def job_callback(session: AsyncSession, job_id: str) -> dict[str, Any] | None:
    """The job's callback delivery (its newest) with every attempt, oldest first; None if the
    job has none queued."""
    query = (
        select(AlertDelivery)
        .where(AlertDelivery.job_id == job_id)
        .order_by(AlertDelivery.id.desc())
        .limit(1)
    )
    delivery = (await session.execute(query)).scalar_one_or_none()
    if delivery is None:
        return None
    attempts = await session.execute(
        select(AlertAttempt)
        .where(AlertAttempt.delivery_id == delivery.id)
        .order_by(AlertAttempt.id)
    )
    return {
        "url": delivery.target,
        "state": delivery.state,
        "next_attempt_at": delivery.next_attempt_at,
        "sent_at": delivery.sent_at,
        "attempts": [
            {"at": a.at, "status_code": a.status_code, "error": a.error} for a in attempts.scalars()
        ],
    }
