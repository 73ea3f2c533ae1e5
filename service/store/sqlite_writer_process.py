"""The SQLite ingest writer's own process: takes batches over a socket, writes, commits, answers.

`ingest_sqlite.SqliteBatchWriter` starts it as a script (`python -I <this file> <socket fd>`), not
through the `service.store` package, so it loads only the standard library: it starts in a
fraction of a second and needs a fraction of the service's memory.

Why a process of its own: `sqlite3` gives up the GIL for every statement and takes it back after.
As a thread of the service it waited for the event loop's thread each time, and made that thread
wait for it; the service's event loop spent more CPU per webhook on that contention than on the
request itself (docs/benchmarks.md). Here the writer has a GIL of its own.

It knows no rule of its own: the parent sends the write path's statements (`ingest.py`) and each
delivery as the tuple of values to bind, and this process runs them. One connection, set up as
every connection to the file is (the parent sends `engine.sqlite_pragmas()`), and
`BEGIN IMMEDIATE`, so the service's other connections queue for the write lock instead of
failing. A batch is a few set-based statements, whatever its size: each statement is a round
into SQLite's C code, so rows are never written one statement each (only on the one-by-one
path, after a batch failed).

Protocol, one message at a time (the parent waits for each answer); every message is a 4-byte
length and a pickle of plain values:

- the parent sends the setup (`Setup` fields, as a dict); the answer is "ready", or
  ("error", text) when the file could not be opened;
- ("together", rows) or ("together", rows, forwards): all in one transaction (each forward,
  (delivery id, target, due), only if its delivery was inserted now); the answer is
  ("ok", inserted ids, linked ids, due job ids), or ("refused", text) when SQLite refused it
  (rolled back, nothing committed);
- ("each", rows[, forwards]): each row (with its forwards) in a savepoint of one transaction;
  the answer is
  ("ok", per row "stored" | "duplicate" | "failed", linked ids, due job ids), or ("error", text);
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
from collections.abc import Iterator, Sequence
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
    insert_sql: str
    """The deliveries' INSERT, with `{rows}` where the VALUES rows go."""
    row_sql: str
    """One row of those VALUES: `(?, ?, ...)`."""
    touch_sql: str
    """The jobs' UPDATE ... RETURNING id, with `{ids}` where the batch's delivery ids go."""
    existing_sql: str
    """A SELECT of the JSON array of the ids among `{ids}` that the inbox holds."""
    linked_sql: str
    """A SELECT of the JSON array of the ids among `{ids}` linked to a job."""
    claimed_column: int
    """Where a row's named job id is: only a row that names one can have been linked."""
    forward_sql: str = ""
    """The outbox's INSERT of forwards, with `{rows}` where the VALUES rows go."""
    forward_row_sql: str = ""
    """One row of those VALUES (delivery id, target, due)."""


# Rows per multi-row statement: well under SQLite's limit of 32,766 bound parameters.
_CHUNK = 200
# Each batch size makes statements of its own text; with sqlite3's default cache of 128 they
# were parsed and compiled again for most batches.
_CACHED_STATEMENTS = 1024
_LOCK_RETRY_SECONDS = 0.0005
# What SQLite (or binding a value: a text it cannot encode) raises for a statement it refused.
_REFUSED = (sqlite3.Error, ValueError)


class BatchWriter:
    """Runs the write path on one `sqlite3` connection: a batch together, or row by row."""

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
        self._setup = setup

    def close(self) -> None:
        self._conn.close()

    def together(
        self, rows: Sequence[tuple[Any, ...]], forwards: Sequence[tuple[Any, ...]] = ()
    ) -> tuple[Any, ...]:
        """Write every row in one transaction, and the forwards of those inserted."""
        self._begin()
        try:
            inserted = self._insert(rows)
            if forwards:
                self._forward(forwards, inserted)
            linked = self._linked(rows, inserted)
            due = self._touch(inserted)
            self._conn.execute("COMMIT")
        except _REFUSED as exc:
            self._rollback()
            return ("refused", f"{type(exc).__name__}: {exc}")
        return ("ok", inserted, linked, due)

    def each(
        self, rows: Sequence[tuple[Any, ...]], forwards: Sequence[tuple[Any, ...]] = ()
    ) -> tuple[Any, ...]:
        """Write each row (and its forwards) in a savepoint of its own: a bad row is rolled
        back alone."""
        conn = self._conn
        outcomes: list[str] = []
        due: dict[str, None] = {}
        linked: list[str] = []
        self._begin()
        try:
            for row in rows:
                conn.execute("SAVEPOINT delivery")
                try:
                    inserted = self._insert([row])
                    if forwards:
                        self._forward([f for f in forwards if f[0] == row[0]], inserted)
                    linked += self._linked([row], inserted)
                    due.update(dict.fromkeys(self._touch(inserted)))
                except _REFUSED as exc:
                    conn.execute("ROLLBACK TO delivery")
                    conn.execute("RELEASE delivery")
                    outcomes.append(FAILED)
                    log.error("could not store delivery %s: %s", row[0], exc)
                    continue
                conn.execute("RELEASE delivery")
                outcomes.append(STORED if inserted else DUPLICATE)
            conn.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        return ("ok", outcomes, linked, list(due))

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

    def _insert(self, rows: Sequence[tuple[Any, ...]]) -> list[str]:
        """Insert the rows; the ids of those it inserted (a known notification id: none)."""
        inserted = 0
        for chunk in _chunks(rows, _CHUNK):
            values = ", ".join([self._setup.row_sql] * len(chunk))
            statement = self._setup.insert_sql.replace("{rows}", values)
            params = [value for row in chunk for value in row]
            inserted += self._conn.execute(statement, params).rowcount
        ids = [row[0] for row in rows]
        if inserted == len(rows):
            return ids  # the usual case: every one was new, no need to ask which
        found: set[str] = set()
        for chunk in _chunks(ids, 500):
            statement = self._setup.existing_sql.replace("{ids}", ", ".join("?" * len(chunk)))
            (found_json,) = self._conn.execute(statement, chunk).fetchone()
            found.update(json.loads(found_json))
        return [delivery_id for delivery_id in ids if delivery_id in found]

    def _forward(self, forwards: Sequence[tuple[Any, ...]], inserted: Sequence[str]) -> None:
        """Queue the forwards of the deliveries inserted now (a repeat queues none)."""
        new = set(inserted)
        todo = [forward for forward in forwards if forward[0] in new]
        for chunk in _chunks(todo, _CHUNK):
            values = ", ".join([self._setup.forward_row_sql] * len(chunk))
            statement = self._setup.forward_sql.replace("{rows}", values)
            self._conn.execute(statement, [value for forward in chunk for value in forward])

    def _linked(self, rows: Sequence[tuple[Any, ...]], inserted: Sequence[str]) -> list[str]:
        """The ids among `inserted` that the insert linked to the job they name."""
        column = self._setup.claimed_column
        new = set(inserted)
        claiming = [row[0] for row in rows if row[column] is not None and row[0] in new]
        linked: list[str] = []
        for chunk in _chunks(claiming, 500):
            statement = self._setup.linked_sql.replace("{ids}", ", ".join("?" * len(chunk)))
            (found_json,) = self._conn.execute(statement, chunk).fetchone()
            linked += json.loads(found_json)
        return linked

    def _touch(self, inserted: Sequence[str]) -> list[str]:
        """Touch the open jobs the inserted rows are linked to; the jobs now due."""
        due: list[str] = []
        for chunk in _chunks(inserted, 500):
            statement = self._setup.touch_sql.replace("{ids}", ", ".join("?" * len(chunk)))
            due += [row[0] for row in self._conn.execute(statement, chunk)]
        return due

    def _rollback(self) -> None:
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")


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
        while (message := read_message(stream)) is not None:
            how, rows, *forwards = message
            try:
                if how == "together":
                    reply = writer.together(rows, *forwards)
                else:
                    reply = writer.each(rows, *forwards)
            except Exception as exc:
                log.exception("could not store a batch of %d deliveries", len(rows))
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


class _JsonLines(logging.Formatter):
    """The service's JSON log line (service/logs.py), made with the standard library alone."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "event": record.getMessage(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "timestamp": datetime.fromtimestamp(record.created, UTC)
            .isoformat()
            .replace("+00:00", "Z"),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line)


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
    handler = logging.StreamHandler(sys.stderr)
    if len(argv) > 2 and argv[2] == "json":  # the service logs JSON: so do we, one per line
        handler.setFormatter(_JsonLines())
    else:
        handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
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
