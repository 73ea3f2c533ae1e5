"""Idempotency keys: the job each company's key made. Functions take a session and never
commit."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import exc as sa_exc
from sqlalchemy import insert, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from service.store.models import IdempotencyKey, Job, JobCallback

NO_TENANT = ""
"""The company of a key when none is configured (a primary key column cannot be NULL)."""
_LOOKUP_CHUNK = 400
"""Keys looked up per statement (SQLite binds at most 32,766 parameters; two per key)."""


@dataclass(frozen=True)
class KeyClaim:
    """A key as stored: the request's fingerprint and the job it made."""

    tenant: str | None
    key: str
    fingerprint: str
    job_id: str


async def find_keys(
    session: AsyncSession, wanted: Iterable[tuple[str | None, str]]
) -> dict[tuple[str | None, str], KeyClaim]:
    """The stored claims of these (tenant, key) pairs, by pair; pairs with none are absent."""
    pairs = list(dict.fromkeys((tenant or NO_TENANT, key) for tenant, key in wanted))
    found: dict[tuple[str | None, str], KeyClaim] = {}
    for start in range(0, len(pairs), _LOOKUP_CHUNK):
        chunk = pairs[start : start + _LOOKUP_CHUNK]
        query = select(
            IdempotencyKey.tenant,
            IdempotencyKey.key,
            IdempotencyKey.fingerprint,
            IdempotencyKey.job_id,
        ).where(tuple_(IdempotencyKey.tenant, IdempotencyKey.key).in_(chunk))
        for row in await session.execute(query):
            tenant = row.tenant or None
            found[(tenant, row.key)] = KeyClaim(tenant, row.key, row.fingerprint, row.job_id)
    return found


async def find_key_with_job(
    session: AsyncSession, tenant: str | None, key: str
) -> tuple[KeyClaim, Job, str | None] | None:
    """A company's key with the job it made and that job's callback URL, in one read: a repeat
    is answered from this and the job's timeline."""
    query = (
        select(IdempotencyKey.fingerprint, Job, JobCallback.url)
        .join(Job, Job.id == IdempotencyKey.job_id)
        .outerjoin(JobCallback, JobCallback.job_id == Job.id)
        .where(IdempotencyKey.tenant == (tenant or NO_TENANT), IdempotencyKey.key == key)
    )
    row = (await session.execute(query)).one_or_none()
    if row is None:
        return None
    fingerprint, job, url = row
    return KeyClaim(tenant, key, fingerprint, job.id), job, url


async def add_keys(session: AsyncSession, claims: Sequence[KeyClaim], *, at: datetime) -> None:
    """Store these claims; a key another transaction holds raises `sqlalchemy.IntegrityError`
    (on PostgreSQL after that transaction ends: the second writer waits for the first)."""
    if not claims:
        return
    rows = [
        {
            "tenant": claim.tenant or NO_TENANT,
            "key": claim.key,
            "fingerprint": claim.fingerprint,
            "job_id": claim.job_id,
            "created_at": at,
        }
        for claim in claims
    ]
    await session.execute(insert(IdempotencyKey), rows)


def is_key_taken(exc: sa_exc.IntegrityError) -> bool:
    """Whether the error is a key that another request holds (not some other constraint)."""
    return "idempotency_keys" in str(exc.orig)
