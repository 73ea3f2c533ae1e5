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
import enum
import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncEngine

from service import metrics
from service.logs import FailureLog

log = logging.getLogger(__name__)

BACKGROUND_EVENT = "BACKGROUND_API_RESPONSE"
"""The background answer's event id (the domain's `BACKGROUND_EVENT`): its own label."""
OTHER_EVENT_LABEL = "other"


class IngestUnavailable(Exception):
    """The delivery could not be stored; the sender should retry (503)."""


class BatchRefused(Exception):
    """The database refused a batch as a whole (a bad row, say); nothing of it was committed."""


class Stored(enum.Enum):
    """What became of one delivery handed to the writer."""

    NEW = "stored"
    DUPLICATE = "duplicate"
    """Its notification id was already committed (or is, by an earlier one of the same batch)."""
    FAILED = "failed"
    """Not committed: the sender must retry."""


@dataclass
class DeliveryRecord:
    """One verified delivery, ready to insert: its fields are the inbox columns it brings, in
    order (`DELIVERY_COLUMNS`). `claimed_job_id` is the job its header names; whether the row
    links to it (`deliveries.job_id`) is the writer's decision."""

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
    tenant_id: str | None = None
    """The company the delivery says it is for (`x-vwd-tenant-id`)."""

    def values(self) -> dict[str, Any]:
        """The inbox columns of this delivery."""
        return {name: getattr(self, name) for name in DELIVERY_COLUMNS}


DELIVERY_COLUMNS = tuple(field.name for field in dataclasses.fields(DeliveryRecord))
"""The inbox columns a delivery brings, in the order every statement and row uses."""


class LinkRules(Protocol):
    """The domain's rules for linking a delivery to the job it names (`domain.LINK_RULES`),
    as plain values; the writer compiles them into its statement."""

    @property
    def open_states(self) -> tuple[str, ...]: ...

    @property
    def adopting_state(self) -> str: ...

    @property
    def visma_id_differs(self) -> str: ...

    @property
    def visma_id_taken(self) -> str: ...

    @property
    def cannot_adopt(self) -> str: ...

    @property
    def tenant_differs(self) -> str: ...


class EventRouter(Protocol):
    """The domain's event routes (`domain.EventRoutes`): which targets a delivery's event goes
    to, and the label it is counted under."""

    def __bool__(self) -> bool: ...

    def targets_for(self, event_id: str | None) -> Sequence[str]: ...

    def label_for(self, event_id: str | None) -> str: ...


FORWARD = "forward"
"""The outbox channel of a forwarded Visma event."""
FORWARD_COLUMNS = (
    "inbox_delivery_id",
    "channel",
    "target",
    "state",
    "attempts",
    "next_attempt_at",
)
"""The outbox columns a forward row sets (the rest are their defaults)."""


def forwards_of(records: Sequence[DeliveryRecord], routes: EventRouter) -> list[tuple[str, str]]:
    """(delivery id, target) for each target each delivery's event is routed to."""
    targets_for = routes.targets_for
    return [(r.id, target) for r in records for target in targets_for(r.event_id)]


def deliveries_insert(rules: LinkRules, *, source: str, returning: bool) -> str:
    """INSERT of the deliveries in `source` (a derived table with `DELIVERY_COLUMNS`), each
    linked to its named job when `rules` allow; with `returning`, it returns what it inserted.

    `j` is the named job, `h` the job that holds the body's Visma job id (unique, so one).
    The first copy of a notification id wins; later ones are no-ops, and so is one whose
    delivery retention has removed while the dispatcher may still send it (`purged_notifications`).
    """
    refusal = f"""CASE
            WHEN d.tenant_id IS NOT NULL AND j.tenant IS NOT NULL AND d.tenant_id <> j.tenant
                THEN {_literal(rules.tenant_differs)}
            WHEN j.id IS NULL OR d.visma_job_id IS NULL OR j.visma_job_id = d.visma_job_id
                THEN NULL
            WHEN j.visma_job_id IS NOT NULL THEN {_literal(rules.visma_id_differs)}
            WHEN h.id IS NOT NULL THEN {_literal(rules.visma_id_taken)}
            WHEN j.state <> {_literal(rules.adopting_state)} THEN {_literal(rules.cannot_adopt)}
        END"""
    picked = [
        "coalesce(refusal, problem)" if name == "problem" else name for name in DELIVERY_COLUMNS
    ]
    # The WHERE also keeps SQLite from taking the upsert's ON for a join's.
    return f"""
INSERT INTO deliveries ({", ".join(DELIVERY_COLUMNS)}, job_id)
SELECT {", ".join(picked)}, CASE WHEN refusal IS NULL THEN named_job END
FROM (
    SELECT d.*, j.id AS named_job, {refusal} AS refusal
    FROM {source} AS d
    LEFT JOIN jobs AS j ON j.id = d.claimed_job_id
    LEFT JOIN jobs AS h ON h.visma_job_id = d.visma_job_id
) AS linked
WHERE NOT EXISTS (
    SELECT 1 FROM purged_notifications AS p WHERE p.notification_id = linked.notification_id
)
ORDER BY notification_id
ON CONFLICT (notification_id) DO NOTHING
{"RETURNING id, job_id, received_at" if returning else ""}
"""


def jobs_touch(rules: LinkRules, *, inserted: str, also: str = "true") -> str:
    """UPDATE of each open job that a delivery in `inserted` (a derived table of inbox rows) is
    linked to: its webhook time is the latest delivery's, and its state read is due now.
    Returns the jobs it made due."""
    return f"""
UPDATE jobs SET last_webhook_at = u.at, last_modified_at = u.at, next_check_at = u.at
FROM (
    SELECT job_id, max(received_at) AS at FROM {inserted} AS i
    WHERE job_id IS NOT NULL GROUP BY job_id
) AS u
WHERE jobs.id = u.job_id AND jobs.state IN ({sql_list(rules.open_states)}) AND {also}
RETURNING jobs.id
"""


def sql_list(values: Collection[str]) -> str:
    """`values` as an SQL list of string literals, for `IN (...)`."""
    return ", ".join(_literal(value) for value in values)


def sql_literal(text: str) -> str:
    """`text` as an SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


_literal = sql_literal


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
    """Jobs still open that a stored delivery is linked to: their state read is due now."""
    linked: Collection[str] = ()
    """The stored deliveries that were linked to the job they name (open or finished)."""
    forwarded: bool = False
    """Whether a stored delivery's forwards were queued (the sender has work)."""


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
