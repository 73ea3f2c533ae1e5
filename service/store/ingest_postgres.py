"""The ingest writer's PostgreSQL backend: one asyncpg connection, array-valued bulk statements.

A batch is a handful of round trips whatever its size: lock the named jobs, insert every delivery
with one `INSERT ... SELECT FROM unnest(...) ON CONFLICT DO NOTHING RETURNING id`, update the
matched jobs and add their events the same way, commit. Jobs are locked in id order and
deliveries inserted in notification-id order, so the writers of several workers (or replicas)
that share jobs or see one notification twice wait for each other instead of deadlocking.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from service.store.ingest import (
    OPEN_STATES,
    BatchResult,
    DeliveryRecord,
    Stored,
    first_of_each_notification,
)

log = logging.getLogger(__name__)

# Keys SQLAlchemy's asyncpg dialect understands but asyncpg.connect() does not.
_SQLALCHEMY_ONLY = (
    "prepared_statement_cache_size",
    "prepared_statement_name_func",
    "async_fallback",
)

_LOCK_JOBS = "SELECT id FROM jobs WHERE id = ANY($1::text[]) ORDER BY id FOR NO KEY UPDATE"
_INSERT_DELIVERIES = """
INSERT INTO deliveries (id, kind, notification_id, event_id, received_at, headers, body,
                        verified, job_id, claimed_job_id, visma_job_id, problem)
SELECT id, kind, notification_id, event_id, received_at, headers::json, body,
       verified, job_id, claimed_job_id, visma_job_id, problem
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::text[],
            $7::bytea[], $8::boolean[], $9::text[], $10::text[], $11::text[], $12::text[])
     AS d(id, kind, notification_id, event_id, received_at, headers, body,
          verified, job_id, claimed_job_id, visma_job_id, problem)
ON CONFLICT (notification_id) DO NOTHING
RETURNING id
"""
_TOUCH_JOBS = f"""
UPDATE jobs AS j SET last_webhook_at = u.at, last_modified_at = u.at,
    visma_job_id = coalesce(j.visma_job_id, u.visma_job_id),
    next_check_at = CASE WHEN j.state IN ({", ".join(f"'{s}'" for s in OPEN_STATES)})
                         THEN u.at ELSE j.next_check_at END
FROM unnest($1::text[], $2::timestamptz[], $3::text[]) AS u(id, at, visma_job_id)
WHERE j.id = u.id
"""
_INSERT_EVENTS = """
INSERT INTO job_events (job_id, at, kind, source, detail)
SELECT job_id, at, 'webhook', 'webhook', detail::json
FROM unnest($1::text[], $2::timestamptz[], $3::text[]) AS e(job_id, at, detail)
"""


class PostgresBatchWriter:
    """Writes batches on one asyncpg connection of its own (reopened if it is lost)."""

    def __init__(self, connect_kwargs: Mapping[str, Any], *, timeout_seconds: float = 30.0) -> None:
        self._connect_kwargs = {
            k: v for k, v in connect_kwargs.items() if k not in _SQLALCHEMY_ONLY
        }
        self._timeout = timeout_seconds
        self._conn: asyncpg.Connection | None = None

    async def open(self) -> None:
        await self._connection()

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.close(timeout=self._timeout)

    async def write(self, records: Sequence[DeliveryRecord]) -> BatchResult:
        conn = await self._connection()
        try:
            return await self._write_together(conn, records)
        except (asyncpg.PostgresError, ValueError, TypeError) as exc:
            # A statement failed (and its transaction was rolled back): find the bad rows.
            if len(records) == 1:
                log.error("ingest: could not store delivery %s: %s", records[0].id, exc)
                return BatchResult([Stored.FAILED], [])
            log.warning("ingest: batch of %d failed (%s); one savepoint each", len(records), exc)
        return await self._write_one_by_one(conn, records)

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            self._conn = await asyncpg.connect(
                **self._connect_kwargs, command_timeout=self._timeout, timeout=self._timeout
            )
        return self._conn

    async def _write_together(
        self, conn: asyncpg.Connection, records: Sequence[DeliveryRecord]
    ) -> BatchResult:
        rows = first_of_each_notification(records)
        claimed = sorted({r.claimed_job_id for r in rows if r.claimed_job_id})
        async with conn.transaction():
            existing = await _lock_jobs(conn, claimed)
            inserted = await _insert(conn, sorted(rows, key=_insert_order), existing)
            # Jobs hear of their deliveries in arrival order.
            matched = [r for r in rows if r.id in inserted and r.job_id_in(existing)]
            if matched:
                await _touch_jobs(conn, matched)
        outcomes = [Stored.NEW if r.id in inserted else Stored.DUPLICATE for r in records]
        return BatchResult(outcomes, [r.claimed_job_id for r in matched if r.claimed_job_id])

    async def _write_one_by_one(
        self, conn: asyncpg.Connection, records: Sequence[DeliveryRecord]
    ) -> BatchResult:
        # Each delivery in a savepoint of its own: a bad row is rolled back alone.
        outcomes: list[Stored] = []
        matched: list[str] = []
        async with conn.transaction():
            for record in records:
                claimed = [record.claimed_job_id] if record.claimed_job_id else []
                try:
                    async with conn.transaction():
                        existing = await _lock_jobs(conn, claimed)
                        new = bool(await _insert(conn, [record], existing))
                        if new and record.claimed_job_id and record.job_id_in(existing):
                            await _touch_jobs(conn, [record])
                except (asyncpg.PostgresError, ValueError, TypeError) as exc:
                    log.error("ingest: could not store delivery %s: %s", record.id, exc)
                    outcomes.append(Stored.FAILED)
                    continue
                outcomes.append(Stored.NEW if new else Stored.DUPLICATE)
                if new and record.claimed_job_id and record.job_id_in(existing):
                    matched.append(record.claimed_job_id)
        return BatchResult(outcomes, matched)


def _insert_order(record: DeliveryRecord) -> tuple[str, str]:
    return (record.notification_id or "", record.id)


async def _lock_jobs(conn: asyncpg.Connection, job_ids: list[str]) -> set[str]:
    """The named jobs that exist, locked (in id order) until the transaction ends."""
    if not job_ids:
        return set()
    return {row[0] for row in await conn.fetch(_LOCK_JOBS, job_ids)}


async def _insert(
    conn: asyncpg.Connection, rows: Sequence[DeliveryRecord], existing: set[str]
) -> set[str]:
    """Insert the deliveries; the ids of those that were new."""
    result = await conn.fetch(
        _INSERT_DELIVERIES,
        [r.id for r in rows],
        [r.kind for r in rows],
        [r.notification_id for r in rows],
        [r.event_id for r in rows],
        [r.received_at for r in rows],
        [json.dumps(r.headers) for r in rows],
        [r.body for r in rows],
        [r.verified for r in rows],
        [r.claimed_job_id if r.job_id_in(existing) else None for r in rows],
        [r.claimed_job_id for r in rows],
        [r.visma_job_id for r in rows],
        [r.problem for r in rows],
    )
    return {row[0] for row in result}


async def _touch_jobs(conn: asyncpg.Connection, records: Sequence[DeliveryRecord]) -> None:
    """Record the webhook on each matched job and make its state read due now."""
    # One row per job, as if the deliveries had been applied in order: the last one's time,
    # and the first Visma job id unless the job already has one.
    latest: dict[str, tuple[datetime, str | None]] = {}
    for r in records:
        job_id = r.claimed_job_id or ""
        _at, visma_job_id = latest.get(job_id, (r.received_at, None))
        latest[job_id] = (r.received_at, visma_job_id or r.visma_job_id)
    job_ids = sorted(latest)
    await conn.execute(
        _TOUCH_JOBS,
        job_ids,
        [latest[j][0] for j in job_ids],
        [latest[j][1] for j in job_ids],
    )
    await conn.execute(
        _INSERT_EVENTS,
        [r.claimed_job_id for r in records],
        [r.received_at for r in records],
        [json.dumps(r.webhook_event_detail()) for r in records],
    )
