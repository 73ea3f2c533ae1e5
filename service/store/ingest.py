"""The ingest writer: group commit for the webhook hot path.

Requests hand their delivery to one writer and wait. The writer takes everything queued, writes
it with a few set-based statements in one transaction, commits once, and only then wakes each
request with its own answer. So every acknowledgement still means "committed", but concurrent
requests share the cost of the commit.

One write path, whatever the database: a batch is `deliveries_insert` (every delivery, linked to
the job its header names when the link rules allow it, with its problem named when they do not;
a notification id already stored makes its row a no-op), then `jobs_touch` (each open job a new
delivery was linked to: its webhook time, and its state read due now). A webhook for a finished
job writes nothing but its inbox row, which is the `webhook` entry of the job's timeline.
Deliveries whose event is routed (`EVENT_ROUTES`, passed in as `routes`) get their forwards in
the same statements: one `alert_deliveries` row (channel `forward`) per target, for each newly
inserted delivery only, so a repeated notification is forwarded once; with no routes, the
statements and the work per delivery are what they were.
If a batch fails as a whole, the same statements run again one delivery at a time, each in a
savepoint of one transaction, so a single bad row fails alone: the others are still committed
and acknowledged, and the bad one gets `FAILED` (503).

The writer talks to the driver directly, not through SQLAlchemy: stdlib `sqlite3` in a process
of its own (`ingest_sqlite.py`, `sqlite_writer_process.py`) or one asyncpg connection
(`ingest_postgres.py`). The ORM and the engine's pool stay for everything else; the commit, not
the framework, is the cost here, and the ORM's per-row work would be most of what is left.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncEngine

from service import metrics
from service.logs import FailureLog
from service.store.ingest_rows import (
    DELIVERY_COLUMNS,
    FORWARD,
    FORWARD_COLUMNS,
    BatchRefused,
    BatchResult,
    DeliveryRecord,
    EventRouter,
    LinkRules,
    Stored,
    deliveries_insert,
    first_of_each_notification,
    forwards_of,
    jobs_touch,
    sql_list,
    sql_literal,
)

__all__ = [
    "DELIVERY_COLUMNS",
    "FORWARD",
    "FORWARD_COLUMNS",
    "BatchRefused",
    "BatchResult",
    "BatchWriter",
    "DeliveryRecord",
    "EventRouter",
    "IngestUnavailable",
    "IngestWriter",
    "LinkRules",
    "Stored",
    "deliveries_insert",
    "first_of_each_notification",
    "forwards_of",
    "jobs_touch",
    "sql_list",
    "sql_literal",
]

log = logging.getLogger(__name__)

BACKGROUND_EVENT = "BACKGROUND_API_RESPONSE"
"""The background answer's event id (the domain's `BACKGROUND_EVENT`): its own label."""
OTHER_EVENT_LABEL = "other"


class IngestUnavailable(Exception):
    """The delivery could not be stored; the sender should retry (503)."""


class BatchWriter(Protocol):
    """A database backend: runs the write path's statements and commits."""

    @property
    def concurrency(self) -> int:
        """How many batches it can write at once."""
        ...

    async def open(self) -> None: ...

    async def write_together(
        self,
        records: Sequence[DeliveryRecord],
        forwards: Sequence[tuple[str, str]] = (),
    ) -> tuple[Collection[str], Collection[str], list[str]]:
        """Write every delivery in one transaction (with the `forwards`, (delivery id, target),
        of those it inserted): the ids it inserted, those of them it linked to their job, and
        the jobs it made due.
        Raises BatchRefused if the database refused the batch (rolled back)."""
        ...

    async def write_each(
        self,
        records: Sequence[DeliveryRecord],
        forwards: Sequence[tuple[str, str]] = (),
    ) -> BatchResult:
        """Write each delivery (and its forwards) in a savepoint of its own, in one
        transaction."""
        ...

    async def close(self) -> None: ...


@dataclass
class _Pending:
    record: DeliveryRecord
    done: asyncio.Future[Stored]
    linked: bool = False
    """Set, before `done`, when the stored row was linked to the job it names."""


class IngestWriter:
    """Stores deliveries in shared transactions; `store()` returns once its row is committed.

    `rules` decide which job a delivery is linked to (`domain.LINK_RULES`), `routes` where its
    event is forwarded (`domain.EventRoutes`; none: nowhere). `on_matched` is called after each
    commit with the open jobs whose state read is now due: it wakes the resolver. A webhook for
    a finished job makes nothing due. `on_forwarded` is called after a commit that queued
    forwards: it wakes the outbox's sender.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        rules: LinkRules,
        routes: EventRouter | None = None,
        max_batch: int = 512,
        on_matched: Callable[[Sequence[str]], None] | None = None,
        on_forwarded: Callable[[], None] | None = None,
    ) -> None:
        self._routes = routes if routes else None
        self._backend = _backend_for(engine, rules, forwarding=self._routes is not None)
        self._on_forwarded = on_forwarded
        self._max_batch = max_batch
        self._on_matched = on_matched
        self._queue: collections.deque[_Pending] = collections.deque()
        self._ready = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._running = 0
        """Writer tasks not yet ended (counted by their done callbacks, not per request)."""
        self._closing = False
        self._failures = FailureLog(log, "ingest: storing a batch")

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
        new, _linked = await self.store_linking(record)
        return new

    async def store_linking(self, record: DeliveryRecord) -> tuple[bool, bool]:
        """Store one delivery: whether it was new, and whether it was linked to its named job."""
        # What store_many([record]) does, without its lists: this is every webhook's path.
        if self._running <= 0 or self._closing:
            raise IngestUnavailable("ingest writer is not running")
        pending = _Pending(record, asyncio.get_running_loop().create_future())
        self._queue.append(pending)
        self._ready.set()
        outcome = await pending.done
        if outcome is Stored.FAILED:
            raise IngestUnavailable("the delivery could not be stored")
        return outcome is Stored.NEW, pending.linked

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
            result = await self._write_records([p.record for p in batch])
        except Exception as exc:
            # Not even one delivery could be committed (the database is gone, say): all retry.
            self._failures.failed(exc)
            result = BatchResult([Stored.FAILED] * len(batch), [])
        except BaseException:
            # The writer task itself is stopped (cancelled): answer 503 rather than never. A
            # retry of a delivery the batch did commit is then answered as a duplicate.
            for pending in batch:
                _fail(pending)
            raise
        else:
            if self._failures.failing:
                self._failures.succeeded()
        stored = duplicate = 0
        background = 0
        others: list[str | None] = []
        linked = result.linked
        for pending, outcome in zip(batch, result.outcomes, strict=True):
            if outcome is Stored.NEW:
                stored += 1
                if linked and pending.record.id in linked:
                    pending.linked = True
                # Counted by event: the background answer (the main load) costs a compare.
                if pending.record.event_id == BACKGROUND_EVENT:
                    background += 1
                else:
                    others.append(pending.record.event_id)
            elif outcome is Stored.DUPLICATE:
                duplicate += 1
            if not pending.done.done():
                pending.done.set_result(outcome)
        metrics.record_batch(
            stored=stored, duplicate=duplicate, failed=len(batch) - stored - duplicate
        )
        metrics.record_events(background, self._labels(others))
        if result.due_job_ids and self._on_matched is not None:
            self._on_matched(result.due_job_ids)
        if result.forwarded and self._on_forwarded is not None:
            self._on_forwarded()

    def _labels(self, event_ids: Sequence[str | None]) -> Collection[str]:
        """The metric labels of these events: bounded by the routes (`other` for the rest)."""
        if not event_ids:
            return ()
        if self._routes is None:
            return [OTHER_EVENT_LABEL] * len(event_ids)
        return [self._routes.label_for(event_id) for event_id in event_ids]

    async def _write_records(self, records: Sequence[DeliveryRecord]) -> BatchResult:
        rows = first_of_each_notification(records)
        forwards = forwards_of(rows, self._routes) if self._routes is not None else ()
        try:
            if forwards:
                inserted, linked, due = await self._backend.write_together(rows, forwards)
            else:
                inserted, linked, due = await self._backend.write_together(rows)
        except BatchRefused as exc:
            if len(records) == 1:
                log.error("ingest: could not store delivery %s: %s", records[0].id, exc)
                return BatchResult([Stored.FAILED], [])
            log.warning("ingest: batch of %d failed (%s); one savepoint each", len(records), exc)
            if not forwards or self._routes is None:
                return await self._backend.write_each(records)
            each = await self._backend.write_each(records, forwards_of(records, self._routes))
            return dataclasses.replace(each, forwarded=any(o is Stored.NEW for o in each.outcomes))
        outcomes = [Stored.NEW if r.id in inserted else Stored.DUPLICATE for r in records]
        forwarded = bool(forwards) and any(delivery in inserted for delivery, _t in forwards)
        return BatchResult(outcomes, due, linked, forwarded=forwarded)


def _backend_for(engine: AsyncEngine, rules: LinkRules, *, forwarding: bool) -> BatchWriter:
    # Imported here so that each backend's driver is loaded only when it is used.
    if engine.dialect.name == "postgresql":
        from service.store.ingest_postgres import PostgresBatchWriter

        _args, connect_kwargs = engine.dialect.create_connect_args(engine.url)
        return PostgresBatchWriter(connect_kwargs, rules=rules, forwarding=forwarding)
    if engine.dialect.name == "sqlite":
        from service.store.ingest_sqlite import SqliteBatchWriter

        database = engine.url.database
        if not database or database == ":memory:":
            raise ValueError("the ingest writer needs a SQLite file, not an in-memory database")
        return SqliteBatchWriter(database, rules=rules)
    raise ValueError(f"no ingest writer for the {engine.dialect.name} dialect")


def _fail(pending: _Pending) -> None:
    if not pending.done.done():
        pending.done.set_result(Stored.FAILED)
