"""The ingest writer's PostgreSQL backend: one asyncpg connection, one statement per batch.

The writer shares the event loop with the HTTP requests, so each round trip to the database
waits behind them; a batch is therefore one statement, one round trip, committed on its own
(autocommit): the write path's insert and job update (`ingest_rows.py`) as CTEs over arrays
(`unnest`). Before the update, the open jobs the batch names are locked in id order: the fixed
lock order keeps the writers of several workers (or replicas) that share jobs or see one
notification twice from deadlocking (the insert takes the unique index in notification-id
order for the same reason).

One by one (after a batch failed), the same statement runs with one delivery at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import operator
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from typing import Any

import asyncpg

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
    sql_list,
    sql_literal,
)

# Keys SQLAlchemy's asyncpg dialect understands but asyncpg.connect() does not.
_SQLALCHEMY_ONLY = (
    "prepared_statement_cache_size",
    "prepared_statement_name_func",
    "async_fallback",
)

# Each inbox column's type in the statement's arrays.
_TYPES: dict[str, str] = {
    "id": "text",
    "kind": "text",
    "notification_id": "text",
    "event_id": "text",
    "received_at": "timestamptz",
    "headers": "json",
    "body": "bytea",
    "verified": "boolean",
    "claimed_job_id": "text",
    "visma_job_id": "text",
    "problem": "text",
    "tenant_id": "text",
}
_HEADERS = DELIVERY_COLUMNS.index("headers")
_values = operator.attrgetter(*DELIVERY_COLUMNS)
"""A record's inbox values, in column order (read in C: this runs for every delivery)."""
_REFUSED = (asyncpg.PostgresError, ValueError, TypeError)
"""What asyncpg raises for a statement it or the server refused (the connection is fine)."""


def write_statement(rules: LinkRules, *, forwarding: bool = False) -> str:
    """The one statement that writes a batch: deliveries in, open jobs touched; it returns a
    ("delivery", id) row per inserted delivery ("linked" for one linked to its job) and a
    ("job", id) row per job made due. With `forwarding`, two more arrays (delivery ids and
    targets) are the batch's forwards: each is queued if its delivery was inserted now."""
    arrays = ", ".join(f"${n}::{_TYPES[c]}[]" for n, c in enumerate(DELIVERY_COLUMNS, 1))
    forwards = ""
    if forwarding:
        first = len(DELIVERY_COLUMNS) + 1
        # Joined to `ins` (what this statement inserted): a repeated notification id, a no-op
        # there, queues nothing here.
        forwards = f""",
fwd AS (
    INSERT INTO alert_deliveries ({", ".join(FORWARD_COLUMNS)})
    SELECT f.delivery_id, {sql_literal(FORWARD)}, f.target, 'pending', 0, ins.received_at
    FROM unnest(${first}::text[], ${first + 1}::text[]) AS f(delivery_id, target)
    JOIN ins ON ins.id = f.delivery_id
    ORDER BY f.delivery_id, f.target
    RETURNING inbox_delivery_id
)"""
    return f"""
WITH d AS (
    SELECT * FROM unnest({arrays}) AS d({", ".join(DELIVERY_COLUMNS)})
),
locked AS MATERIALIZED (
    SELECT id FROM jobs
    WHERE id IN (SELECT claimed_job_id FROM d) AND state IN ({sql_list(rules.open_states)})
    ORDER BY id FOR NO KEY UPDATE
),
ins AS ({deliveries_insert(rules, source="d", returning=True)}),
touched AS ({jobs_touch(rules, inserted="ins", also="jobs.id IN (SELECT id FROM locked)")}){
        forwards
    }
SELECT CASE WHEN job_id IS NULL THEN 'delivery' ELSE 'linked' END, id FROM ins
UNION ALL SELECT 'job', id FROM touched
"""


def _arrays(records: Sequence[DeliveryRecord]) -> list[list[Any]]:
    """One array per inbox column, in `DELIVERY_COLUMNS` order."""
    arrays = [list(column) for column in zip(*map(_values, records), strict=True)]
    arrays[_HEADERS] = [json.dumps(headers) for headers in arrays[_HEADERS]]
    return arrays


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
        rules: LinkRules,
        forwarding: bool = False,
        connections: int = 1,
        timeout_seconds: float = 30.0,
    ) -> None:
        self._connect_kwargs = {
            k: v for k, v in connect_kwargs.items() if k not in _SQLALCHEMY_ONLY
        }
        self._statement = write_statement(rules, forwarding=forwarding)
        self._forwarding = forwarding
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

    async def write_together(
        self, records: Sequence[DeliveryRecord], forwards: Sequence[tuple[str, str]] = ()
    ) -> tuple[Collection[str], Collection[str], list[str]]:
        async with self._connection() as conn:
            try:
                return await self._run(conn, records, forwards)
            except _REFUSED as exc:
                raise BatchRefused(str(exc)) from exc

    async def write_each(
        self, records: Sequence[DeliveryRecord], forwards: Sequence[tuple[str, str]] = ()
    ) -> BatchResult:
        outcomes: list[Stored] = []
        due: dict[str, None] = {}
        linked: set[str] = set()
        async with self._connection() as conn, conn.transaction():
            for record in records:
                try:
                    async with conn.transaction():  # a savepoint: a bad row is undone alone
                        mine = [f for f in forwards if f[0] == record.id]
                        inserted, linked_now, made_due = await self._run(conn, [record], mine)
                except _REFUSED:
                    outcomes.append(Stored.FAILED)
                    continue
                outcomes.append(Stored.NEW if inserted else Stored.DUPLICATE)
                linked.update(linked_now)
                due.update(dict.fromkeys(made_due))
        return BatchResult(outcomes, list(due), linked)

    async def _run(
        self,
        conn: asyncpg.Connection,
        records: Sequence[DeliveryRecord],
        forwards: Sequence[tuple[str, str]] = (),
    ) -> tuple[set[str], set[str], list[str]]:
        arrays = _arrays(records)
        if self._forwarding:
            arrays += [[f[0] for f in forwards], [f[1] for f in forwards]]
        rows = await conn.fetch(self._statement, *arrays)
        linked = {row[1] for row in rows if row[0] == "linked"}
        inserted = linked | {row[1] for row in rows if row[0] == "delivery"}
        return inserted, linked, [row[1] for row in rows if row[0] == "job"]

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection from the slots for one batch, reopened first if it was lost."""
        if self._slots is None:
            raise RuntimeError("the PostgreSQL ingest writer is not open")
        slots = self._slots
        conn = await slots.get()
        try:
            if conn is None or conn.is_closed():
                conn = None  # if reconnecting fails, the slot stays empty for the next try
                conn = await self._connect()
            yield conn
        finally:
            slots.put_nowait(conn)

    async def _connect(self) -> asyncpg.Connection:
        return await asyncpg.connect(
            **self._connect_kwargs, command_timeout=self._timeout, timeout=self._timeout
        )
