"""The ingest writer's SQLite backend: a process of its own, fed over a socket.

The writing itself (statements, transaction, the one-by-one path) is in
`sqlite_writer_process.py`, which runs as its own process with its own GIL: as a thread of this
one it spent its time waiting for the event loop's thread, and the loop for it. This side
starts it, sends each batch as plain values, and turns its answer back into `Stored` outcomes.

It sends the process the write path's statements (`ingest_rows.py`, with SQLite's VALUES as the
source) once, at setup, and each delivery as the values to bind, in the forms SQLAlchemy writes
and reads on SQLite (`UtcDateTime`: naive UTC text; `JSON`: text).

If the process dies, a new one writes the batch in hand again (what the old one had committed
comes back as duplicates, by notification id); if that fails too, the batch gets 503 and the
sender retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import operator
import pickle
import socket
import sys
import time
from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from service.logs import configured_format
from service.store.engine import sqlite_pragmas
from service.store.ingest_rows import (
    DELIVERY_COLUMNS,
    FORWARD,
    FORWARD_COLUMNS,
    BatchRefused,
    BatchResult,
    DeliveryRecord,
    LinkRules,
    Stored,
    deliveries_insert,
    jobs_touch,
    sql_literal,
)
from service.store.sqlite_writer_process import FRAME, Setup, frame

log = logging.getLogger(__name__)

_PROCESS_SCRIPT = Path(__file__).with_name("sqlite_writer_process.py")
_STOP_TIMEOUT_SECONDS = 10.0
_RESTART_BACKOFF_SECONDS = 1.0
_HEADERS = DELIVERY_COLUMNS.index("headers")
_RECEIVED_AT = DELIVERY_COLUMNS.index("received_at")
_VERIFIED = DELIVERY_COLUMNS.index("verified")
_values = operator.attrgetter(*DELIVERY_COLUMNS)
# `DELIVERY_COLUMNS` named over SQLite's VALUES columns (column1, column2, ...).
_SOURCE = "(SELECT {} FROM (VALUES {{rows}}))".format(
    ", ".join(f"column{n} AS {name}" for n, name in enumerate(DELIVERY_COLUMNS, 1))
)
_INSERTED = "(SELECT job_id, received_at FROM deliveries WHERE id IN ({ids}))"
_OUTCOMES = {"stored": Stored.NEW, "duplicate": Stored.DUPLICATE, "failed": Stored.FAILED}


def sqlite_timestamp(at: datetime) -> str:
    """`at` as SQLAlchemy stores a UTC datetime in SQLite (naive UTC text, microseconds)."""
    if at.tzinfo is UTC:  # what the webhook endpoint makes: drop the "+00:00"
        return at.isoformat(" ", "microseconds")[:-6]
    return at.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _row(record: DeliveryRecord) -> tuple[Any, ...]:
    """The values the process binds for one delivery, in `DELIVERY_COLUMNS` order."""
    row = list(_values(record))
    row[_RECEIVED_AT] = sqlite_timestamp(record.received_at)
    row[_HEADERS] = json.dumps(record.headers)
    row[_VERIFIED] = 1 if record.verified else 0
    return tuple(row)


def _forward_rows(
    records: Sequence[DeliveryRecord], forwards: Sequence[tuple[str, str]]
) -> list[tuple[str, str, str]]:
    """Each forward as the process binds it: delivery id, target, when it is due (received)."""
    due = {r.id: sqlite_timestamp(r.received_at) for r in records}
    return [(delivery_id, target, due[delivery_id]) for delivery_id, target in forwards]


class WriterProcessGone(Exception):
    """The writer process ended, or its socket broke, before it answered."""


class SqliteBatchWriter:
    """Hands batches to the writer process, one at a time, and waits for each answer."""

    concurrency = 1  # SQLite has one writer at a time anyway

    def __init__(self, path: str, *, rules: LinkRules, busy_timeout_seconds: float = 30.0) -> None:
        self._setup = Setup(
            path=path,
            busy_timeout_seconds=busy_timeout_seconds,
            pragmas=sqlite_pragmas(busy_timeout_seconds=busy_timeout_seconds),
            # Without RETURNING: a row per inserted delivery was a step, and a round into
            # Python, of its own; the count says whether any was a duplicate.
            insert_sql=deliveries_insert(rules, source=_SOURCE, returning=False),
            row_sql="(" + ", ".join("?" * len(DELIVERY_COLUMNS)) + ")",
            touch_sql=jobs_touch(rules, inserted=_INSERTED),
            existing_sql="SELECT json_group_array(id) FROM deliveries WHERE id IN ({ids})",
            linked_sql="SELECT json_group_array(id) FROM deliveries"
            " WHERE id IN ({ids}) AND job_id IS NOT NULL",
            claimed_column=DELIVERY_COLUMNS.index("claimed_job_id"),
            forward_sql=f"INSERT INTO alert_deliveries ({', '.join(FORWARD_COLUMNS)})"
            " VALUES {rows}",
            forward_row_sql=f"(?, {sql_literal(FORWARD)}, ?, 'pending', 0, ?)",
        )
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._next_start = 0.0
        """When a new process may be started (`time.monotonic()`), after one failed to start."""

    @property
    def pid(self) -> int | None:
        """The writer process's id while one runs."""
        return self._process.pid if self._process and self._process.returncode is None else None

    async def open(self) -> None:
        await self._start()

    async def write_together(
        self, records: Sequence[DeliveryRecord], forwards: Sequence[tuple[str, str]] = ()
    ) -> tuple[Collection[str], Collection[str], list[str]]:
        rows = [_row(r) for r in records]
        message = (
            ("together", rows, _forward_rows(records, forwards))
            if forwards
            else (
                "together",
                rows,
            )
        )
        reply = await self._send(message)
        if reply[0] == "refused":
            raise BatchRefused(reply[1])
        _ok, inserted, linked, due = reply
        return set(inserted), set(linked), list(due)

    async def write_each(
        self, records: Sequence[DeliveryRecord], forwards: Sequence[tuple[str, str]] = ()
    ) -> BatchResult:
        rows = [_row(r) for r in records]
        message = ("each", rows, _forward_rows(records, forwards)) if forwards else ("each", rows)
        _ok, outcomes, linked, due = await self._send(message)
        return BatchResult([_OUTCOMES[outcome] for outcome in outcomes], list(due), set(linked))

    async def close(self) -> None:
        await self._stop()

    async def _send(self, message: tuple[Any, ...]) -> Any:
        try:
            reply = await self._exchange_with_process(message)
        except WriterProcessGone:
            # It died, before this batch or while writing it: a new process writes the batch
            # again. What the old one had committed comes back as duplicates of itself (the
            # notification id), never stored twice.
            log.warning("the SQLite writer process went away; starting another")
            reply = await self._exchange_with_process(message)
        if reply[0] not in ("ok", "refused"):
            raise RuntimeError(f"the SQLite writer could not store the batch: {reply[1]}")
        return reply

    async def _exchange_with_process(self, message: Any) -> Any:
        if self._process is None or self._process.returncode is not None:
            await self._kill()
            await self._start()
        try:
            return await self._exchange(message)
        except BaseException:
            # The socket is out of step (an answer may still be on its way, say this task was
            # cancelled), or the process is gone: either way, this one is done with.
            await self._kill()
            raise

    async def _start(self) -> None:
        wait = self._next_start - time.monotonic()
        if wait > 0:
            # The last start failed just now (the file's directory gone, say): fail fast
            # rather than start an interpreter per batch.
            raise WriterProcessGone(f"the SQLite writer could not start; next try in {wait:.1f} s")
        try:
            await self._spawn()
        except BaseException:
            self._next_start = time.monotonic() + _RESTART_BACKOFF_SECONDS
            await self._kill()
            raise

    async def _spawn(self) -> None:
        ours, theirs = socket.socketpair()
        try:
            with theirs:
                self._process = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-I",  # only the standard library: not this service's path or environment
                    str(_PROCESS_SCRIPT),
                    str(theirs.fileno()),
                    configured_format() or "plain",
                    pass_fds=(theirs.fileno(),),
                    start_new_session=True,  # a Ctrl-C at the terminal is the service's to handle
                )
            self._reader, self._writer = await asyncio.open_connection(sock=ours)
        except BaseException:
            ours.close()
            raise
        answer = await self._exchange(self._setup._asdict())
        if answer != "ready":
            detail = answer[1] if isinstance(answer, tuple) else answer
            raise RuntimeError(f"the SQLite writer could not open {self._setup.path}: {detail}")

    async def _exchange(self, message: Any) -> Any:
        reader, writer = self._reader, self._writer
        if reader is None or writer is None:
            raise WriterProcessGone("the SQLite writer process is not running")
        try:
            writer.write(frame(message))
            await writer.drain()
            (size,) = FRAME.unpack(await reader.readexactly(FRAME.size))
            # Unpickled: the other end is our own process, over a socket pair only we hold.
            return pickle.loads(await reader.readexactly(size))
        except (OSError, asyncio.IncompleteReadError) as exc:
            raise WriterProcessGone(f"the SQLite writer process went away: {exc!r}") from exc

    async def _stop(self) -> None:
        """Ask the process to finish (it ends after the batch in hand); kill it if it does not
        within the deadline (stopped, or stuck on a hung disk)."""
        process, writer = self._process, self._writer
        if writer is not None:
            with contextlib.suppress(OSError):
                writer.write(frame(None))
            writer.close()
        try:
            async with asyncio.timeout(_STOP_TIMEOUT_SECONDS):
                if writer is not None:
                    with contextlib.suppress(OSError):
                        await writer.wait_closed()
                if process is not None:
                    await process.wait()
        except TimeoutError:
            log.error("the SQLite writer process did not stop; killing it")
        await self._kill()

    async def _kill(self) -> None:
        """End the process now (a batch it had not committed is rolled back by SQLite)."""
        process, writer = self._process, self._writer
        self._process, self._reader, self._writer = None, None, None
        if writer is not None:
            writer.transport.abort()
        if process is not None:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
            await process.wait()
