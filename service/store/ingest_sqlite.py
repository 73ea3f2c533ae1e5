"""The ingest writer's SQLite backend: a process of its own, fed over a socket.

The writing itself (statements, transaction, the one-by-one path) is in
`sqlite_writer_process.py`, which runs as its own process with its own GIL: as a thread of this
one it spent its time waiting for the event loop's thread, and the loop for it. This side
starts it, sends each batch as plain values, and turns its answer back into `Stored` outcomes.

If the process dies, the batch in hand fails (503: the sender retries, and a delivery it had
committed is then answered as a duplicate) and the next batch starts a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pickle
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from service.store.engine import sqlite_pragmas
from service.store.ingest import OPEN_STATES_SQL, BatchResult, DeliveryRecord, Stored, not_settled
from service.store.sqlite_writer_process import FRAME, Setup, frame

log = logging.getLogger(__name__)

_PROCESS_SCRIPT = Path(__file__).with_name("sqlite_writer_process.py")
_STOP_TIMEOUT_SECONDS = 10.0


class WriterProcessGone(Exception):
    """The writer process ended, or its socket broke, before it answered."""


class SqliteBatchWriter:
    """Hands batches to the writer process, one at a time, and waits for each answer."""

    concurrency = 1  # SQLite has one writer at a time anyway

    def __init__(self, path: str, *, busy_timeout_seconds: float = 30.0) -> None:
        self._setup = Setup(
            path=path,
            busy_timeout_seconds=busy_timeout_seconds,
            pragmas=sqlite_pragmas(busy_timeout_seconds=busy_timeout_seconds),
            open_states_sql=OPEN_STATES_SQL,
            not_settled_jobs_sql=not_settled("jobs"),
        )
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    @property
    def pid(self) -> int | None:
        """The writer process's id while one runs."""
        return self._process.pid if self._process and self._process.returncode is None else None

    async def open(self) -> None:
        await self._start()

    async def write(self, records: Sequence[DeliveryRecord]) -> BatchResult:
        if self._process is None or self._process.returncode is not None:
            await self._stop()
            await self._start()  # the last one died: this batch gets a new one
        rows = [
            (
                r.id,
                r.kind,
                r.notification_id,
                r.event_id,
                r.received_at,
                r.headers,
                r.body,
                r.verified,
                r.claimed_job_id,
                r.visma_job_id,
                r.problem,
            )
            for r in records
        ]
        try:
            reply = await self._exchange(rows)
        except BaseException:
            # An answer may still be on its way (say, this task was cancelled): the socket is
            # out of step, so this process is done with; the next batch starts another.
            await self._stop()
            raise
        if reply[0] == "error":
            raise RuntimeError(f"the SQLite writer could not store the batch: {reply[1]}")
        outcomes, due_job_ids = reply
        return BatchResult([Stored(outcome) for outcome in outcomes], list(due_job_ids))

    async def close(self) -> None:
        await self._stop()

    async def _start(self) -> None:
        ours, theirs = socket.socketpair()
        with theirs:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-I",  # only the standard library: not this service's path or environment
                str(_PROCESS_SCRIPT),
                str(theirs.fileno()),
                pass_fds=(theirs.fileno(),),
                start_new_session=True,  # a Ctrl-C at the terminal is the service's to handle
            )
        self._reader, self._writer = await asyncio.open_connection(sock=ours)
        try:
            answer = await self._exchange(self._setup._asdict())
        except BaseException:
            await self._stop()
            raise
        if answer != "ready":
            await self._stop()
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
        """Ask the process to finish (it ends after the batch in hand), else kill it."""
        process, writer = self._process, self._writer
        self._process, self._reader, self._writer = None, None, None
        if writer is not None:
            with contextlib.suppress(OSError):
                writer.write(frame(None))
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        if process is None:
            return
        try:
            await asyncio.wait_for(process.wait(), _STOP_TIMEOUT_SECONDS)
        except TimeoutError:
            log.error("the SQLite writer process did not stop; killing it")
            process.kill()
            await process.wait()
