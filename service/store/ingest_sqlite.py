"""The ingest writer's SQLite backend: stdlib `sqlite3` in one thread of its own.

One connection, WAL and `synchronous=FULL` (a commit is on disk before anyone is told), and
`BEGIN IMMEDIATE`, so the service's other connections queue for the write lock instead of failing.
Values are written in the forms SQLAlchemy writes and reads on SQLite (`UtcDateTime`, `JSON`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from service.store.ingest import (
    OPEN_STATES,
    BatchResult,
    DeliveryRecord,
    Stored,
    first_of_each_notification,
)

log = logging.getLogger(__name__)

_INSERT_DELIVERY = """
INSERT INTO deliveries (id, kind, notification_id, event_id, received_at, headers, body,
                        verified, job_id, claimed_job_id, visma_job_id, problem)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (notification_id) DO NOTHING
"""
_TOUCH_JOB = f"""
UPDATE jobs SET last_webhook_at = :at, last_modified_at = :at,
    visma_job_id = coalesce(visma_job_id, :visma_job_id),
    next_check_at = CASE WHEN state IN ({", ".join(f"'{s}'" for s in OPEN_STATES)})
                         THEN :at ELSE next_check_at END
WHERE id = :job_id
"""
_INSERT_EVENT = """
INSERT INTO job_events (job_id, at, kind, source, detail) VALUES (?, ?, 'webhook', 'webhook', ?)
"""


def sqlite_timestamp(at: datetime) -> str:
    """`at` as SQLAlchemy stores a UTC datetime in SQLite (naive UTC text, microseconds)."""
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


class SqliteBatchWriter:
    """Writes batches on one `sqlite3` connection, in one thread, off the event loop."""

    def __init__(self, path: str, *, busy_timeout_seconds: float = 30.0) -> None:
        self._path = path
        self._timeout = busy_timeout_seconds
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None

    async def open(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-sqlite")
        await asyncio.get_running_loop().run_in_executor(self._executor, self._connect)

    async def write(self, records: Sequence[DeliveryRecord]) -> BatchResult:
        if self._executor is None:
            raise RuntimeError("the SQLite ingest writer is not open")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.write_now, records)

    async def close(self) -> None:
        if self._executor is None:
            return
        await asyncio.get_running_loop().run_in_executor(self._executor, self._disconnect)
        self._executor.shutdown(wait=True)
        self._executor = None

    def _connect(self) -> None:
        conn = sqlite3.connect(
            self._path, timeout=self._timeout, isolation_level=None, check_same_thread=False
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute(f"PRAGMA busy_timeout={int(self._timeout * 1000)}")
        self._conn = conn

    def _disconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def write_now(self, records: Sequence[DeliveryRecord]) -> BatchResult:
        """Write one batch in this thread: all in one transaction, else one savepoint each."""
        conn = self._conn
        if conn is None:
            raise RuntimeError("the SQLite ingest writer is not open")
        try:
            return self._write_together(conn, records)
        except Exception as exc:
            _rollback(conn)
            if len(records) == 1:
                log.error("ingest: could not store delivery %s: %s", records[0].id, exc)
                return BatchResult([Stored.FAILED], [])
            log.warning("ingest: batch of %d failed (%s); one savepoint each", len(records), exc)
        try:
            return self._write_one_by_one(conn, records)
        except Exception:
            _rollback(conn)
            raise

    def _write_together(
        self, conn: sqlite3.Connection, records: Sequence[DeliveryRecord]
    ) -> BatchResult:
        rows = first_of_each_notification(records)
        conn.execute("BEGIN IMMEDIATE")
        existing = _existing_jobs(conn, {r.claimed_job_id for r in rows if r.claimed_job_id})
        inserted: set[str] = set()
        for record in rows:
            cursor = conn.execute(_INSERT_DELIVERY, _delivery_row(record, existing))
            if cursor.rowcount == 1:
                inserted.add(record.id)
        matched = [r for r in rows if r.id in inserted and r.job_id_in(existing)]
        if matched:
            _touch_jobs(conn, matched)
        conn.execute("COMMIT")
        outcomes = [Stored.NEW if r.id in inserted else Stored.DUPLICATE for r in records]
        return BatchResult(outcomes, [r.claimed_job_id for r in matched if r.claimed_job_id])

    def _write_one_by_one(
        self, conn: sqlite3.Connection, records: Sequence[DeliveryRecord]
    ) -> BatchResult:
        # Each delivery in a savepoint of its own: a bad row is rolled back alone.
        outcomes: list[Stored] = []
        matched: list[str] = []
        conn.execute("BEGIN IMMEDIATE")
        for record in records:
            conn.execute("SAVEPOINT delivery")
            try:
                existing = _existing_jobs(
                    conn, {record.claimed_job_id} if record.claimed_job_id else set()
                )
                cursor = conn.execute(_INSERT_DELIVERY, _delivery_row(record, existing))
                new = cursor.rowcount == 1
                if new and record.claimed_job_id and record.job_id_in(existing):
                    _touch_jobs(conn, [record])
                    matched.append(record.claimed_job_id)
            except Exception as exc:
                conn.execute("ROLLBACK TO delivery")
                conn.execute("RELEASE delivery")
                outcomes.append(Stored.FAILED)
                log.error("ingest: could not store delivery %s: %s", record.id, exc)
                continue
            conn.execute("RELEASE delivery")
            outcomes.append(Stored.NEW if new else Stored.DUPLICATE)
        conn.execute("COMMIT")
        return BatchResult(outcomes, matched)


def _existing_jobs(conn: sqlite3.Connection, job_ids: set[str]) -> set[str]:
    if not job_ids:
        return set()
    ids = list(job_ids)
    found: set[str] = set()
    # Stay well under SQLite's limit on bound parameters.
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ", ".join("?" * len(chunk))
        rows = conn.execute(f"SELECT id FROM jobs WHERE id IN ({marks})", chunk)
        found.update(row[0] for row in rows)
    return found


def _delivery_row(
    record: DeliveryRecord, existing: set[str]
) -> tuple[str | bytes | int | None, ...]:
    return (
        record.id,
        record.kind,
        record.notification_id,
        record.event_id,
        sqlite_timestamp(record.received_at),
        json.dumps(record.headers),
        record.body,
        1 if record.verified else 0,
        record.claimed_job_id if record.job_id_in(existing) else None,
        record.claimed_job_id,
        record.visma_job_id,
        record.problem,
    )


def _touch_jobs(conn: sqlite3.Connection, records: Sequence[DeliveryRecord]) -> None:
    """Record the webhook on each matched job and make its state read due now."""
    conn.executemany(
        _TOUCH_JOB,
        [
            {
                "job_id": r.claimed_job_id,
                "at": sqlite_timestamp(r.received_at),
                "visma_job_id": r.visma_job_id,
            }
            for r in records
        ],
    )
    conn.executemany(
        _INSERT_EVENT,
        [
            (
                r.claimed_job_id,
                sqlite_timestamp(r.received_at),
                json.dumps(r.webhook_event_detail()),
            )
            for r in records
        ],
    )


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        conn.execute("ROLLBACK")
