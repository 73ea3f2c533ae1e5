"""The ingest writer's PostgreSQL backend: one asyncpg connection, one statement per batch.

The writer shares the event loop with the HTTP requests, so each round trip to the database
waits behind them; a batch is therefore one statement, one round trip, committed on its own
(autocommit). Its CTEs read the named jobs, insert every delivery from arrays (`unnest`, in
notification-id order, `ON CONFLICT DO NOTHING`), then lock (in id order) and update the matched
jobs that are not settled. The fixed lock order keeps the writers of
several workers (or replicas) that share jobs or see one notification twice from deadlocking.

If that statement fails, the batch is written again one savepoint per delivery (several
statements, but only then).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from service.store.ingest import (
    OPEN_STATES_SQL,
    BatchResult,
    DeliveryRecord,
    Stored,
    due_job_ids,
    first_of_each_notification,
    not_settled,
)

log = logging.getLogger(__name__)

# Keys SQLAlchemy's asyncpg dialect understands but asyncpg.connect() does not.
_SQLALCHEMY_ONLY = (
    "prepared_statement_cache_size",
    "prepared_statement_name_func",
    "async_fallback",
)

_WRITE_BATCH = f"""
WITH d AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[],
                         $6::text[], $7::bytea[], $8::boolean[], $9::text[], $10::text[],
                         $11::text[], $12::int[])
        AS d(id, kind, notification_id, event_id, received_at, headers, body, verified,
             claimed_job_id, visma_job_id, problem, ord)
),
facts AS MATERIALIZED (
    SELECT id, state, {not_settled("jobs")} AS changeable
    FROM jobs WHERE id IN (SELECT claimed_job_id FROM d)
),
locked AS MATERIALIZED (
    -- Only jobs a webhook can still change (see ingest.not_settled).
    SELECT id FROM jobs WHERE id IN (SELECT id FROM facts WHERE changeable)
    ORDER BY id FOR NO KEY UPDATE
),
ins AS (
    INSERT INTO deliveries (id, kind, notification_id, event_id, received_at, headers, body,
                            verified, job_id, claimed_job_id, visma_job_id, problem)
    SELECT d.id, d.kind, d.notification_id, d.event_id, d.received_at, d.headers::json, d.body,
           d.verified, f.id, d.claimed_job_id, d.visma_job_id, d.problem
    FROM d LEFT JOIN facts AS f ON f.id = d.claimed_job_id
    ORDER BY d.notification_id
    ON CONFLICT (notification_id) DO NOTHING
    RETURNING id, job_id
),
hits AS (
    SELECT d.ord, d.received_at, d.visma_job_id, ins.job_id
    FROM ins JOIN d ON d.id = ins.id JOIN locked AS l ON l.id = ins.job_id
),
touched AS (
    -- As if the deliveries were applied in order: the last one's time, the first Visma job id.
    UPDATE jobs AS j SET last_webhook_at = u.at, last_modified_at = u.at,
        visma_job_id = coalesce(j.visma_job_id, u.visma_job_id),
        next_check_at = CASE WHEN j.state IN ({OPEN_STATES_SQL}) THEN u.at ELSE j.next_check_at END
    FROM (SELECT job_id, (array_agg(received_at ORDER BY ord DESC))[1] AS at,
                 (array_agg(visma_job_id ORDER BY ord)
                     FILTER (WHERE visma_job_id IS NOT NULL))[1] AS visma_job_id
          FROM hits GROUP BY job_id) AS u
    WHERE j.id = u.job_id
)
SELECT ins.id, f.state FROM ins LEFT JOIN facts AS f ON f.id = ins.job_id
"""

# The one-by-one path (after a batch failed), statement by statement.
_LOCK_JOBS = "SELECT id, state FROM jobs WHERE id = ANY($1::text[]) ORDER BY id FOR NO KEY UPDATE"
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
    next_check_at = CASE WHEN j.state IN ({OPEN_STATES_SQL}) THEN u.at ELSE j.next_check_at END
FROM unnest($1::text[], $2::timestamptz[], $3::text[]) AS u(id, at, visma_job_id)
WHERE j.id = u.id AND {not_settled("j")}
"""


class PostgresBatchWriter:
    """Writes batches on asyncpg connections of its own (each reopened if it is lost).

    With `connections` > 1, that many batches can be in flight at once (the unique index and
    the lock order keep them correct together). One is the default: on the 2-core machine of
    docs/benchmarks.md a second gained nothing measurable; the commit is shared either way.
    """

    def __init__(
        self,
        connect_kwargs: Mapping[str, Any],
        *,
        connections: int = 1,
        timeout_seconds: float = 30.0,
    ) -> None:
        self._connect_kwargs = {
            k: v for k, v in connect_kwargs.items() if k not in _SQLALCHEMY_ONLY
        }
        self.concurrency = connections
        self._timeout = timeout_seconds
        self._slots: asyncio.Queue[asyncpg.Connection | None] | None = None

    async def open(self) -> None:
        self._slots = asyncio.Queue()
        for _ in range(self.concurrency):
            self._slots.put_nowait(await self._connect())

    async def close(self) -> None:
        slots, self._slots = self._slots, None
        while slots is not None and not slots.empty():
            conn = slots.get_nowait()
            if conn is not None:
                await conn.close(timeout=self._timeout)

    async def write(self, records: Sequence[DeliveryRecord]) -> BatchResult:
        if self._slots is None:
            raise RuntimeError("the PostgreSQL ingest writer is not open")
        slots = self._slots
        conn = await slots.get()
        try:
            if conn is None or conn.is_closed():
                conn = None  # if reconnecting fails, the slot stays empty for the next try
                conn = await self._connect()
            return await self._write(conn, records)
        finally:
            slots.put_nowait(conn)

    async def _write(
        self, conn: asyncpg.Connection, records: Sequence[DeliveryRecord]
    ) -> BatchResult:
        try:
            return await self._write_together(conn, records)
        except (asyncpg.PostgresError, ValueError, TypeError) as exc:
            # The statement failed (and was rolled back as a whole): find the bad rows.
            if len(records) == 1:
                log.error("ingest: could not store delivery %s: %s", records[0].id, exc)
                return BatchResult([Stored.FAILED], [])
            log.warning("ingest: batch of %d failed (%s); one savepoint each", len(records), exc)
        return await self._write_one_by_one(conn, records)

    async def _connect(self) -> asyncpg.Connection:
        return await asyncpg.connect(
            **self._connect_kwargs, command_timeout=self._timeout, timeout=self._timeout
        )

    async def _write_together(
        self, conn: asyncpg.Connection, records: Sequence[DeliveryRecord]
    ) -> BatchResult:
        rows = first_of_each_notification(records)
        result = await conn.fetch(
            _WRITE_BATCH,
            [r.id for r in rows],
            [r.kind for r in rows],
            [r.notification_id for r in rows],
            [r.event_id for r in rows],
            [r.received_at for r in rows],
            [json.dumps(r.headers) for r in rows],
            [r.body for r in rows],
            [r.verified for r in rows],
            [r.claimed_job_id for r in rows],
            [r.visma_job_id for r in rows],
            [r.problem for r in rows],
            list(range(len(rows))),
        )
        # Each inserted delivery, with its job's state when it matched one.
        inserted: dict[str, str | None] = {row[0]: row[1] for row in result}
        matched: list[DeliveryRecord] = []
        states: dict[str, str] = {}
        for r in rows:  # in arrival order
            state = inserted.get(r.id)
            if state is not None and r.claimed_job_id:
                matched.append(r)
                states[r.claimed_job_id] = state
        outcomes = [Stored.NEW if r.id in inserted else Stored.DUPLICATE for r in records]
        return BatchResult(outcomes, due_job_ids(matched, states))

    async def _write_one_by_one(
        self, conn: asyncpg.Connection, records: Sequence[DeliveryRecord]
    ) -> BatchResult:
        # Each delivery in a savepoint of its own: a bad row is rolled back alone.
        outcomes: list[Stored] = []
        matched: list[DeliveryRecord] = []
        states: dict[str, str] = {}
        async with conn.transaction():
            for record in records:
                claimed = [record.claimed_job_id] if record.claimed_job_id else []
                try:
                    async with conn.transaction():
                        job_states = await _lock_jobs(conn, claimed)
                        new = bool(await _insert(conn, [record], job_states))
                        if new and record.job_id_in(job_states):
                            await _touch_jobs(conn, [record])
                except (asyncpg.PostgresError, ValueError, TypeError) as exc:
                    log.error("ingest: could not store delivery %s: %s", record.id, exc)
                    outcomes.append(Stored.FAILED)
                    continue
                outcomes.append(Stored.NEW if new else Stored.DUPLICATE)
                if new and record.job_id_in(job_states):
                    matched.append(record)
                    states.update(job_states)
        return BatchResult(outcomes, due_job_ids(matched, states))


def _insert_order(record: DeliveryRecord) -> tuple[str, str]:
    return (record.notification_id or "", record.id)


async def _lock_jobs(conn: asyncpg.Connection, job_ids: list[str]) -> dict[str, str]:
    """The state of each named job that exists, locked (in id order) until the end."""
    if not job_ids:
        return {}
    return {row[0]: row[1] for row in await conn.fetch(_LOCK_JOBS, job_ids)}


async def _insert(
    conn: asyncpg.Connection, rows: Sequence[DeliveryRecord], existing: Mapping[str, str]
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
    """Record the webhook on each matched job not settled (the statement leaves those out);
    an open one's read is due now."""
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
