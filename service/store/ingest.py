"""The ingest writer: group commit for the webhook hot path (DESIGN.md 4).

Requests hand their delivery to one writer and wait. The writer takes everything queued, writes
it with a few bulk statements in one transaction, commits once, and only then wakes each request
with its own answer. So every acknowledgement still means "committed", but concurrent requests
share the cost of the commit.

What a batch writes: one inbox row per new delivery (naming its job when the job exists: that
row is the `webhook` entry of the job's timeline), and for each job that is not yet settled
(`not_settled`) its webhook time, its Visma job id if it had none, and, while it is open, a
state read due now. A webhook for a settled job (Visma's late or repeated deliveries, and
the usual case after a poll resolved the job) writes nothing but its inbox row.

The writer talks to the driver directly, not through SQLAlchemy: stdlib `sqlite3` in a process of
its own (`ingest_sqlite.py`, `sqlite_writer_process.py`) or one asyncpg connection
(`ingest_postgres.py`). The ORM and the engine's pool stay for everything else; the commit, not
the framework, is the cost here, and the ORM's per-row work would be most of what is left.

If a batch fails as a whole, the writer writes it again with one savepoint per delivery in one
transaction, so a single bad row fails alone: the others are still committed and acknowledged,
and the bad one (or every one, when even that transaction cannot commit) gets `FAILED` (503).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger(__name__)

OPEN_STATES = ("submitted", "accepted")
"""Job states whose Visma state read a webhook makes due now (as in `domain.OPEN_STATES`)."""


OPEN_STATES_SQL = ", ".join(f"'{state}'" for state in OPEN_STATES)
"""`OPEN_STATES` as an SQL list, for `state IN (...)`."""


def not_settled(jobs: str) -> str:
    """SQL that holds for a row of `jobs` (a table name or alias) a webhook can still change.

    A settled job is finished and its Visma job id is known: a webhook changes nothing on it,
    so its row is left alone (its inbox row, which names the job, is its timeline entry).
    Both parts only ever move one way, so a job read as settled stays settled. Both backends
    take the rule from here.
    """
    return f"({jobs}.visma_job_id IS NULL OR {jobs}.state IN ({OPEN_STATES_SQL}))"


class IngestUnavailable(Exception):
    """The delivery could not be stored; the sender should retry (503)."""


class Stored(enum.Enum):
    """What became of one delivery handed to the writer."""

    NEW = "stored"
    DUPLICATE = "duplicate"
    """Its notification id was already committed (or is, by an earlier one of the same batch)."""
    FAILED = "failed"
    """Not committed: the sender must retry."""


@dataclass
class DeliveryRecord:
    """One verified delivery, ready to insert. `claimed_job_id` is the job its header names."""

    id: str
    kind: str
    notification_id: str | None
    event_id: str | None
    received_at: datetime
    headers: dict[str, str]
    body: bytes
    verified: bool
    claimed_job_id: str | None = None
    visma_job_id: str | None = None
    problem: str | None = None

    def job_id_in(self, existing: Collection[str]) -> bool:
        """Whether the job this delivery names is one of `existing`."""
        return self.claimed_job_id is not None and self.claimed_job_id in existing


def first_of_each_notification(records: Sequence[DeliveryRecord]) -> list[DeliveryRecord]:
    """`records` less later copies of a notification id; the first copy wins."""
    seen: set[str] = set()
    rows: list[DeliveryRecord] = []
    for record in records:
        key = record.notification_id
        if key is not None:
            if key in seen:
                continue
            seen.add(key)
        rows.append(record)
    return rows


@dataclass(frozen=True)
class BatchResult:
    """Per delivery of a batch (same order) what became of it, and the jobs it made due."""

    outcomes: list[Stored]
    due_job_ids: list[str]
    """Matched jobs still open: their Visma state read is due now (the resolver's work)."""


def due_job_ids(matched: Sequence[DeliveryRecord], states: Mapping[str, str]) -> list[str]:
    """The jobs named by `matched` (in order, once each) whose state is open."""
    due = {r.claimed_job_id: None for r in matched if r.claimed_job_id}
    return [job_id for job_id in due if states.get(job_id) in OPEN_STATES]


class BatchWriter(Protocol):
    """A database backend: writes one batch in one transaction (else one by one) and commits."""

    @property
    def concurrency(self) -> int:
        """How many batches it can write at once."""
        ...

    async def open(self) -> None: ...

    async def write(self, records: Sequence[DeliveryRecord]) -> BatchResult: ...

    async def close(self) -> None: ...


@dataclass
class _Pending:
    record: DeliveryRecord
    done: asyncio.Future[Stored]


class IngestWriter:
    """Stores deliveries in shared transactions; `store()` returns once its row is committed.

    `on_matched` is called after each commit with the matched jobs whose state read is now
    due (open jobs): it wakes the resolver. A webhook for a finished job makes nothing due.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        max_batch: int = 512,
        on_matched: Callable[[Sequence[str]], None] | None = None,
    ) -> None:
        self._backend = _backend_for(engine)
        self._max_batch = max_batch
        self._on_matched = on_matched
        self._queue: collections.deque[_Pending] = collections.deque()
        self._ready = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._running = 0
        """Writer tasks not yet ended (counted by their done callbacks, not per request)."""
        self._closing = False

    async def start(self) -> None:
        if not self._tasks:
            await self._backend.open()
            self._closing = False
            self._tasks = [
                asyncio.create_task(self._run(), name=f"ingest-writer-{n}")
                for n in range(self._backend.concurrency)
            ]
            self._running = len(self._tasks)
            for task in self._tasks:
                task.add_done_callback(self._writer_ended)

    async def close(self) -> None:
        """Finish what is queued (and the batches being written), then stop."""
        if not self._tasks:
            return
        self._closing = True
        self._ready.set()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        for pending in self._queue:
            _fail(pending)
        self._queue.clear()
        await self._backend.close()

    async def store(self, record: DeliveryRecord) -> bool:
        """Store one delivery; True if new, False if its notification id was already stored."""
        # What store_many([record]) does, without its lists: this is every webhook's path.
        if self._running <= 0 or self._closing:
            raise IngestUnavailable("ingest writer is not running")
        pending = _Pending(record, asyncio.get_running_loop().create_future())
        self._queue.append(pending)
        self._ready.set()
        outcome = await pending.done
        if outcome is Stored.FAILED:
            raise IngestUnavailable("the delivery could not be stored")
        return outcome is Stored.NEW

    async def store_many(self, records: Sequence[DeliveryRecord]) -> list[Stored]:
        """Store deliveries together (one batch, up to `max_batch`); what became of each."""
        if self._running <= 0 or self._closing:
            raise IngestUnavailable("ingest writer is not running")
        loop = asyncio.get_running_loop()
        pendings = [_Pending(record, loop.create_future()) for record in records]
        self._queue.extend(pendings)
        self._ready.set()
        return [await pending.done for pending in pendings]

    def _writer_ended(self, _task: asyncio.Task[None]) -> None:
        self._running -= 1
        if self._running <= 0:  # no one is left to write what is queued: it must be retried
            while self._queue:
                _fail(self._queue.popleft())

    async def _run(self) -> None:
        # With several of these (a backend that writes batches side by side), whichever is
        # free takes what has queued up meanwhile.
        while True:
            while self._queue:
                count = min(len(self._queue), self._max_batch)
                batch = [self._queue.popleft() for _ in range(count)]
                await self._write(batch)
            if self._closing:
                self._ready.set()  # let the others see it too
                return
            await self._ready.wait()
            self._ready.clear()

    async def _write(self, batch: list[_Pending]) -> None:
        try:
            result = await self._backend.write([p.record for p in batch])
        except Exception:
            # Not even one delivery could be committed (the database is gone, say): all retry.
            log.exception("ingest: could not store a batch of %d deliveries", len(batch))
            result = BatchResult([Stored.FAILED] * len(batch), [])
        except BaseException:
            # The writer task itself is stopped (cancelled): answer 503 rather than never. A
            # retry of a delivery the batch did commit is then answered as a duplicate.
            for pending in batch:
                _fail(pending)
            raise
        for pending, outcome in zip(batch, result.outcomes, strict=True):
            if not pending.done.done():
                pending.done.set_result(outcome)
        if result.due_job_ids and self._on_matched is not None:
            self._on_matched(result.due_job_ids)


def _backend_for(engine: AsyncEngine) -> BatchWriter:
    # Imported here so that each backend's driver is loaded only when it is used.
    if engine.dialect.name == "postgresql":
        from service.store.ingest_postgres import PostgresBatchWriter

        _args, connect_kwargs = engine.dialect.create_connect_args(engine.url)
        return PostgresBatchWriter(connect_kwargs)
    if engine.dialect.name == "sqlite":
        from service.store.ingest_sqlite import SqliteBatchWriter

        database = engine.url.database
        if not database or database == ":memory:":
            raise ValueError("the ingest writer needs a SQLite file, not an in-memory database")
        return SqliteBatchWriter(database)
    raise ValueError(f"no ingest writer for the {engine.dialect.name} dialect")


def _fail(pending: _Pending) -> None:
    if not pending.done.done():
        pending.done.set_result(Stored.FAILED)
