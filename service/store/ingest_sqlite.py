"""The ingest writer's SQLite backend: stdlib `sqlite3` in one thread of its own.

One connection, set up as every connection to the file is (`engine.configure_sqlite`: WAL,
`synchronous=FULL`, so a commit is on disk before anyone is told), and `BEGIN IMMEDIATE`, so the
service's other connections queue for the write lock instead of failing.
Values are written in the forms SQLAlchemy writes and reads on SQLite (`UtcDateTime`, `JSON`).

A batch is a few set-based statements, whatever its size. That matters beyond SQLite's own cost:
`sqlite3` releases the GIL around every step of every statement, and each time this thread wants
it back it may wait for the event loop's thread to let go. So the writer reads with one-row
aggregate queries and writes with multi-row statements, never a statement per row.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import sys
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

from service.store.engine import configure_sqlite
from service.store.ingest import (
    OPEN_STATES_SQL,
    BatchResult,
    DeliveryRecord,
    Stored,
    first_of_each_notification,
    not_settled,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

_DELIVERY_COLUMNS = (
    "id, kind, notification_id, event_id, received_at, headers, body, verified, job_id,"
    " claimed_job_id, visma_job_id, problem"
)
# The job named by the header, if it exists, by a lookup in the insert itself; a notification
# id already stored makes its row a no-op (a conflict on the primary key is still an error).
# It starts with INSERT, not WITH: Python 3.11's sqlite3 reports `rowcount` only for
# statements that begin with INSERT/UPDATE/DELETE/REPLACE, and the writer relies on it.
_INSERT_DELIVERIES = """
INSERT INTO deliveries ({columns})
SELECT column1, column2, column3, column4, column5, column6, column7, column8,
       (SELECT jobs.id FROM jobs WHERE jobs.id = column9), column9, column10, column11
FROM (VALUES {values}) WHERE true
ON CONFLICT (notification_id) DO NOTHING
"""
# Settled jobs (see ingest.not_settled) are left out by the statement itself.
_TOUCH_JOBS = f"""
UPDATE jobs SET last_webhook_at = u.at, last_modified_at = u.at,
    visma_job_id = coalesce(jobs.visma_job_id, u.visma_job_id),
    next_check_at = CASE WHEN jobs.state IN ({OPEN_STATES_SQL}) THEN u.at
                         ELSE jobs.next_check_at END
FROM (SELECT column1 AS id, column2 AS at, column3 AS visma_job_id FROM (VALUES {{values}})) AS u
WHERE jobs.id = u.id AND {not_settled("jobs")}
"""
# Rows per multi-row statement: well under SQLite's limit of 32,766 bound parameters.
_CHUNK = 200
# Each batch size makes statements of its own text; with sqlite3's default cache of 128 they
# were parsed and compiled again for most batches (~10% of the writer's CPU per row).
_CACHED_STATEMENTS = 1024
# `sqlite3` lets go of the GIL for every step of every statement; to take it back, this thread
# waits until the event loop's thread lets go, at worst a whole switch interval (5 ms by
# default) per statement. At 0.5 ms the matched load did ~10% more req/s (docs/benchmarks.md).
_SWITCH_INTERVAL_SECONDS = 0.0005


class _SwitchInterval:
    """The process's GIL switch interval, shortened while any SQLite writer is open."""

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._holders = 0
        self._saved = sys.getswitchinterval()

    def acquire(self) -> None:
        if self._holders == 0:
            self._saved = sys.getswitchinterval()
            sys.setswitchinterval(self._seconds)
        self._holders += 1

    def release(self) -> None:
        self._holders -= 1
        if self._holders == 0:
            sys.setswitchinterval(self._saved)


_short_switch_interval = _SwitchInterval(_SWITCH_INTERVAL_SECONDS)


def sqlite_timestamp(at: datetime) -> str:
    """`at` as SQLAlchemy stores a UTC datetime in SQLite (naive UTC text, microseconds)."""
    if at.tzinfo is UTC:  # what the webhook endpoint makes: drop the "+00:00"
        return at.isoformat(" ", "microseconds")[:-6]
    return at.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


class SqliteBatchWriter:
    """Writes batches on one `sqlite3` connection, in one thread, off the event loop."""

    concurrency = 1  # SQLite has one writer at a time anyway

    def __init__(self, path: str, *, busy_timeout_seconds: float = 30.0) -> None:
        self._path = path
        self._timeout = busy_timeout_seconds
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None

    async def open(self) -> None:
        _short_switch_interval.acquire()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-sqlite")
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._connect)
        except BaseException:
            self._executor.shutdown(wait=True)
            self._executor = None
            _short_switch_interval.release()
            raise

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
        _short_switch_interval.release()

    def _connect(self) -> None:
        conn = sqlite3.connect(
            self._path,
            timeout=self._timeout,
            isolation_level=None,
            check_same_thread=False,
            cached_statements=_CACHED_STATEMENTS,
        )
        configure_sqlite(conn, busy_timeout_seconds=self._timeout)
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
            return _write_together(conn, records)
        except Exception as exc:
            _rollback(conn)
            if len(records) == 1:
                log.error("ingest: could not store delivery %s: %s", records[0].id, exc)
                return BatchResult([Stored.FAILED], [])
            log.warning("ingest: batch of %d failed (%s); one savepoint each", len(records), exc)
        try:
            return _write_one_by_one(conn, records)
        except Exception:
            _rollback(conn)
            raise


def _write_together(conn: sqlite3.Connection, records: Sequence[DeliveryRecord]) -> BatchResult:
    rows = first_of_each_notification(records)
    # Each delivery's time as stored, once: the delivery and its job both carry it.
    stamps = {r.id: sqlite_timestamp(r.received_at) for r in rows}
    conn.execute("BEGIN IMMEDIATE")
    new = _insert_deliveries(conn, rows, stamps)
    due = _touch_jobs(conn, new, stamps)
    conn.execute("COMMIT")
    inserted = {r.id for r in new}
    outcomes = [Stored.NEW if r.id in inserted else Stored.DUPLICATE for r in records]
    return BatchResult(outcomes, due)


def _write_one_by_one(conn: sqlite3.Connection, records: Sequence[DeliveryRecord]) -> BatchResult:
    # Each delivery in a savepoint of its own: a bad row is rolled back alone.
    outcomes: list[Stored] = []
    due: list[str] = []
    conn.execute("BEGIN IMMEDIATE")
    for record in records:
        conn.execute("SAVEPOINT delivery")
        try:
            stamps = {record.id: sqlite_timestamp(record.received_at)}
            new = _insert_deliveries(conn, [record], stamps)
            due_now = _touch_jobs(conn, new, stamps)
        except Exception as exc:
            conn.execute("ROLLBACK TO delivery")
            conn.execute("RELEASE delivery")
            outcomes.append(Stored.FAILED)
            log.error("ingest: could not store delivery %s: %s", record.id, exc)
            continue
        conn.execute("RELEASE delivery")
        outcomes.append(Stored.NEW if new else Stored.DUPLICATE)
        due += [job_id for job_id in due_now if job_id not in due]
    conn.execute("COMMIT")
    return BatchResult(outcomes, due)


def _insert_deliveries(
    conn: sqlite3.Connection, records: Sequence[DeliveryRecord], stamps: Mapping[str, str]
) -> list[DeliveryRecord]:
    """Insert the deliveries whose notification id is not stored yet; those it inserted."""
    inserted = 0
    for chunk in _chunks(records, _CHUNK):
        params: list[Any] = []
        for r in chunk:
            params += (
                r.id,
                r.kind,
                r.notification_id,
                r.event_id,
                stamps[r.id],
                json.dumps(r.headers),
                r.body,
                1 if r.verified else 0,
                r.claimed_job_id,
                r.visma_job_id,
                r.problem,
            )
        values = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"] * len(chunk))
        statement = _INSERT_DELIVERIES.format(values=values, columns=_DELIVERY_COLUMNS)
        inserted += conn.execute(statement, params).rowcount
    if inserted == len(records):
        return list(records)  # the usual case: every one was new, no need to ask which
    stored = _existing(conn, "deliveries", [r.id for r in records])
    return [r for r in records if r.id in stored]


def _touch_jobs(
    conn: sqlite3.Connection, records: Sequence[DeliveryRecord], stamps: Mapping[str, str]
) -> list[str]:
    """Record the webhook on each named job that is not settled; the open ones, now due."""
    # One row per job, as if the deliveries had been applied in order: the last one's time,
    # and the first Visma job id unless the job already has one.
    latest: dict[str, tuple[str, str | None]] = {}
    for r in records:
        if r.claimed_job_id:
            _at, visma_job_id = latest.get(r.claimed_job_id, ("", None))
            latest[r.claimed_job_id] = (stamps[r.id], visma_job_id or r.visma_job_id)
    touched = 0
    rows = [(job_id, at, visma) for job_id, (at, visma) in latest.items()]
    for jobs in _chunks(rows, _CHUNK):
        params = [value for row in jobs for value in row]
        values = ", ".join(["(?, ?, ?)"] * len(jobs))
        touched += conn.execute(_TOUCH_JOBS.format(values=values), params).rowcount
    if not touched:
        return []  # every named job was settled (or unknown): nothing to read from Visma
    open_jobs = _existing(conn, "jobs", list(latest), f"state IN ({OPEN_STATES_SQL})")
    return [job_id for job_id in latest if job_id in open_jobs]


def _existing(
    conn: sqlite3.Connection, table: str, ids: list[str], condition: str = "true"
) -> set[str]:
    """Which of `ids` are in `table` (and meet `condition`), one aggregate row per chunk."""
    found: set[str] = set()
    for chunk in _chunks(ids, 500):
        marks = ", ".join("?" * len(chunk))
        (ids_json,) = conn.execute(
            f"SELECT json_group_array(id) FROM {table} WHERE id IN ({marks}) AND {condition}",
            chunk,
        ).fetchone()
        found.update(json.loads(ids_json))
    return found


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        conn.execute("ROLLBACK")
