"""The SQLite ingest writer's own process: takes batches over a socket, writes, commits, answers.

`ingest_sqlite.SqliteBatchWriter` starts it as a script (`python -I <this file> <socket fd>`), not
through the `service.store` package, so it loads only the standard library: it starts in a
fraction of a second and adds ~15 MB, not the service's ~50.

Why a process of its own: `sqlite3` gives up the GIL for every statement and takes it back after.
As a thread of the service it waited for the event loop's thread each time, and made that thread
wait for it; the service's event loop spent more CPU per webhook on that contention than on the
request itself (docs/benchmarks.md). Here the writer has a GIL of its own.

One connection, set up as every connection to the file is (the parent sends
`engine.sqlite_pragmas()`), and `BEGIN IMMEDIATE`, so the service's other connections
queue for the write lock instead of failing. Values are written in the forms SQLAlchemy writes
and reads on SQLite (`UtcDateTime`, `JSON`). A batch is a few set-based statements, whatever
its size: each statement is a round into SQLite's C code, so rows are never written one
statement each (only on the one-by-one path, after a batch failed).

Protocol, one batch at a time (the parent waits for each answer); every message is a 4-byte
length and a pickle of plain values:

- the parent sends the setup (`Setup` fields, as a dict); the answer is "ready", or
  ("error", text) when the file could not be opened;
- then each batch is a list of row tuples (`Row` fields, in order); the answer is
  ("ok", outcomes, due job ids): per row "stored", "duplicate" or "failed", and the jobs still
  open that the batch made due; or ("error", text) when not even the one-by-one path could
  commit;
- None, or the socket closing (the service stopped or died), ends the process.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
import signal
import socket
import sqlite3
import struct
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, BinaryIO, NamedTuple, TypeVar

log = logging.getLogger("visma-hooks.ingest-sqlite")
T = TypeVar("T")

FRAME = struct.Struct("!I")
"""Each message's length, before its pickle."""

STORED, DUPLICATE, FAILED = "stored", "duplicate", "failed"


class Setup(NamedTuple):
    path: str
    busy_timeout_seconds: float
    pragmas: Sequence[str]
    """Every `PRAGMA` the service's own connections run (`engine.sqlite_pragmas`)."""
    open_states_sql: str
    """`ingest.OPEN_STATES_SQL`: jobs whose state read a webhook makes due."""
    not_settled_jobs_sql: str
    """`ingest.not_settled("jobs")`: jobs a webhook can still change (the rule lives there)."""


class Row(NamedTuple):
    """One delivery to insert (`ingest.DeliveryRecord`'s fields, as plain values)."""

    id: str
    kind: str
    notification_id: str | None
    event_id: str | None
    received_at: datetime
    headers: dict[str, str]
    body: bytes
    verified: bool
    claimed_job_id: str | None
    visma_job_id: str | None
    problem: str | None


class Reply(NamedTuple):
    ok: str  # "ok": tells it from ("error", text)
    outcomes: list[str]
    due_job_ids: list[str]


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
_TOUCH_JOBS = """
UPDATE jobs SET last_webhook_at = u.at, last_modified_at = u.at,
    visma_job_id = coalesce(jobs.visma_job_id, u.visma_job_id),
    next_check_at = CASE WHEN jobs.state IN ({open_states}) THEN u.at
                         ELSE jobs.next_check_at END
FROM (SELECT column1 AS id, column2 AS at, column3 AS visma_job_id FROM (VALUES {values})) AS u
WHERE jobs.id = u.id AND {not_settled}
"""
# Rows per multi-row statement: well under SQLite's limit of 32,766 bound parameters.
_CHUNK = 200
# Each batch size makes statements of its own text; with sqlite3's default cache of 128 they
# were parsed and compiled again for most batches (~10% of the writer's CPU per row).
_CACHED_STATEMENTS = 1024
_LOCK_RETRY_SECONDS = 0.0005


def sqlite_timestamp(at: datetime) -> str:
    """`at` as SQLAlchemy stores a UTC datetime in SQLite (naive UTC text, microseconds)."""
    if at.tzinfo is UTC:  # what the webhook endpoint makes: drop the "+00:00"
        return at.isoformat(" ", "microseconds")[:-6]
    return at.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


class BatchWriter:
    """Writes batches on one `sqlite3` connection: all in one transaction, else one by one."""

    def __init__(self, setup: Setup) -> None:
        self._conn = sqlite3.connect(
            setup.path,
            timeout=setup.busy_timeout_seconds,
            isolation_level=None,
            cached_statements=_CACHED_STATEMENTS,
        )
        for pragma in setup.pragmas:
            self._conn.execute(f"PRAGMA {pragma}")
        # Waiting for the write lock is `_begin`'s: SQLite's own wait sleeps in coarse steps.
        self._conn.execute("PRAGMA busy_timeout=0")
        # Multi-row statements inside a transaction keep a statement journal, which spilled to
        # a temporary file (created and unlinked for every batch): keep it in memory.
        self._conn.execute("PRAGMA temp_store=MEMORY")
        self._lock_wait_seconds = setup.busy_timeout_seconds
        self._open_states = setup.open_states_sql
        self._touch_jobs_sql = _TOUCH_JOBS.replace("{open_states}", setup.open_states_sql)
        self._touch_jobs_sql = self._touch_jobs_sql.replace(
            "{not_settled}", setup.not_settled_jobs_sql
        )

    def close(self) -> None:
        self._conn.close()

    def write(self, rows: Sequence[Row]) -> Reply:
        """Write one batch: all in one transaction, else one savepoint each."""
        try:
            return self._write_together(rows)
        except Exception as exc:
            self._rollback()
            if len(rows) == 1:
                log.error("could not store delivery %s: %s", rows[0].id, exc)
                return Reply("ok", [FAILED], [])
            log.warning("batch of %d failed (%s); one savepoint each", len(rows), exc)
        try:
            return self._write_one_by_one(rows)
        except Exception:
            self._rollback()
            raise

    def _write_together(self, rows: Sequence[Row]) -> Reply:
        conn = self._conn
        unique = _first_of_each_notification(rows)
        # Each delivery's time as stored, once: the delivery and its job both carry it.
        stamps = {r.id: sqlite_timestamp(r.received_at) for r in unique}
        self._begin()
        new = self._insert_deliveries(unique, stamps)
        due = self._touch_jobs(new, stamps)
        conn.execute("COMMIT")
        inserted = {r.id for r in new}
        return Reply("ok", [STORED if r.id in inserted else DUPLICATE for r in rows], due)

    def _write_one_by_one(self, rows: Sequence[Row]) -> Reply:
        # Each delivery in a savepoint of its own: a bad row is rolled back alone.
        conn = self._conn
        outcomes: list[str] = []
        due: list[str] = []
        self._begin()
        for row in rows:
            conn.execute("SAVEPOINT delivery")
            try:
                stamps = {row.id: sqlite_timestamp(row.received_at)}
                new = self._insert_deliveries([row], stamps)
                due_now = self._touch_jobs(new, stamps)
            except Exception as exc:
                conn.execute("ROLLBACK TO delivery")
                conn.execute("RELEASE delivery")
                outcomes.append(FAILED)
                log.error("could not store delivery %s: %s", row.id, exc)
                continue
            conn.execute("RELEASE delivery")
            outcomes.append(STORED if new else DUPLICATE)
            due += [job_id for job_id in due_now if job_id not in due]
        conn.execute("COMMIT")
        return Reply("ok", outcomes, due)

    def _begin(self) -> None:
        """BEGIN IMMEDIATE, waiting for the write lock in steps of 0.5 ms.

        While the service's own connection holds the lock (the resolver recording an outcome),
        SQLite's busy handler would sleep 1, 2, 5, 10, 15, 20, 25 ms ... between tries, and the
        whole batch, every request in it, waits out the step it is in after the lock is free.
        """
        deadline = time.monotonic() + self._lock_wait_seconds
        while True:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                    raise
            time.sleep(_LOCK_RETRY_SECONDS)

    def _insert_deliveries(self, rows: Sequence[Row], stamps: Mapping[str, str]) -> list[Row]:
        """Insert the deliveries whose notification id is not stored yet; those it inserted."""
        inserted = 0
        for chunk in _chunks(rows, _CHUNK):
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
            inserted += self._conn.execute(statement, params).rowcount
        if inserted == len(rows):
            return list(rows)  # the usual case: every one was new, no need to ask which
        stored = self._existing("deliveries", [r.id for r in rows])
        return [r for r in rows if r.id in stored]

    def _touch_jobs(self, rows: Sequence[Row], stamps: Mapping[str, str]) -> list[str]:
        """Record the webhook on each named job that is not settled; the open ones, now due."""
        # One row per job, as if the deliveries had been applied in order: the last one's
        # time, and the first Visma job id unless the job already has one.
        latest: dict[str, tuple[str, str | None]] = {}
        for r in rows:
            if r.claimed_job_id:
                _at, visma_job_id = latest.get(r.claimed_job_id, ("", None))
                latest[r.claimed_job_id] = (stamps[r.id], visma_job_id or r.visma_job_id)
        touched = 0
        jobs = [(job_id, at, visma) for job_id, (at, visma) in latest.items()]
        for chunk in _chunks(jobs, _CHUNK):
            params = [value for job in chunk for value in job]
            values = ", ".join(["(?, ?, ?)"] * len(chunk))
            statement = self._touch_jobs_sql.replace("{values}", values)
            touched += self._conn.execute(statement, params).rowcount
        if not touched:
            return []  # every named job was settled (or unknown): nothing to read from Visma
        # `+state`: without the unary plus, SQLite answered this from ix_jobs_state_submitted_at_id
        # (which covers id and state), scanning every open job (1.9 ms a batch with 10,000
        # open), not looking the ids up by primary key (0.09 ms).
        open_jobs = self._existing("jobs", list(latest), f"+state IN ({self._open_states})")
        return [job_id for job_id in latest if job_id in open_jobs]

    def _existing(self, table: str, ids: list[str], condition: str = "true") -> set[str]:
        """Which of `ids` are in `table` (and meet `condition`), one aggregate row per chunk."""
        found: set[str] = set()
        for chunk in _chunks(ids, 500):
            marks = ", ".join("?" * len(chunk))
            (ids_json,) = self._conn.execute(
                f"SELECT json_group_array(id) FROM {table} WHERE id IN ({marks}) AND {condition}",
                chunk,
            ).fetchone()
            found.update(json.loads(ids_json))
        return found

    def _rollback(self) -> None:
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")


def _first_of_each_notification(rows: Sequence[Row]) -> list[Row]:
    """`rows` less later copies of a notification id; the first copy wins.

    The rule of `ingest.first_of_each_notification`, written again for rows: this process
    imports nothing of the service (see the module's docstring).
    """
    seen: set[str] = set()
    unique: list[Row] = []
    for row in rows:
        key = row.notification_id
        if key is not None:
            if key in seen:
                continue
            seen.add(key)
        unique.append(row)
    return unique


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def read_message(stream: BinaryIO) -> Any:
    """The next message, or None once the other side has closed."""
    header = stream.read(FRAME.size)
    if len(header) < FRAME.size:
        return None
    (size,) = FRAME.unpack(header)
    payload = stream.read(size)
    if len(payload) < size:
        return None
    return pickle.loads(payload)


def frame(message: Any) -> bytes:
    """`message` as sent: its length, then its pickle."""
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return FRAME.pack(len(payload)) + payload


def serve(stream: BinaryIO) -> None:
    """Answer the parent until it sends None or goes away."""
    setup = read_message(stream)
    if setup is None:
        return
    try:
        writer = BatchWriter(Setup(**setup))
    except Exception as exc:
        _answer(stream, ("error", f"{type(exc).__name__}: {exc}"))
        return
    try:
        _answer(stream, "ready")
        while (batch := read_message(stream)) is not None:
            try:
                reply: Any = tuple(writer.write([Row._make(row) for row in batch]))
            except Exception as exc:
                log.exception("could not store a batch of %d deliveries", len(batch))
                reply = ("error", f"{type(exc).__name__}: {exc}")
            if not _answer(stream, reply):
                return  # the parent gave up on this batch (and on this process)
    finally:
        writer.close()


def _answer(stream: BinaryIO, message: Any) -> bool:
    """Send `message`; False if the parent has gone."""
    try:
        stream.write(frame(message))
        stream.flush()
    except OSError:
        return False
    return True


def main(argv: Sequence[str]) -> int:
    # Its life is the service's: it ends when the service closes the socket (or dies), after
    # the batch in hand. A Ctrl-C or SIGTERM meant for the service's process group must not
    # stop it first, while the service is still draining its queue into it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sock_fd = int(argv[1])
    # uvloop (the service's loop) does not close the parent's other descriptors for a child
    # (its listening socket, with several workers): close them here, keeping stdio.
    os.closerange(3, sock_fd)
    os.closerange(sock_fd + 1, os.sysconf("SC_OPEN_MAX"))
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(name)s %(levelname)s %(message)s"
    )
    with socket.socket(fileno=sock_fd) as sock:
        stream = sock.makefile("rwb")
        try:
            serve(stream)  # type: ignore[arg-type]  # a buffered socket file is a binary stream
        finally:
            with contextlib.suppress(OSError):  # flushing to a parent that has gone
                stream.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
