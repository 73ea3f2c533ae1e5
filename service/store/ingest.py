"""The ingest writer: group commit for the webhook hot path (DESIGN.md 4).

Requests hand their delivery to one writer task and wait. The writer takes everything queued,
writes it with a few bulk statements in one transaction, commits once, and only then wakes each
request with its own answer. So every acknowledgement still means "committed", but concurrent
requests share the cost of the commit. The ORM stays out of this path on purpose.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, case, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service.store.models import Base

log = logging.getLogger(__name__)

_DELIVERIES = Base.metadata.tables["deliveries"]
_JOBS = Base.metadata.tables["jobs"]
_EVENTS = Base.metadata.tables["job_events"]
_OPEN_STATES = ("submitted", "accepted")


class IngestUnavailable(Exception):
    """The delivery could not be stored; the sender should retry (503)."""


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
    event_detail: dict[str, Any] = field(default_factory=dict)

    def job_id_in(self, existing: set[str]) -> bool:
        """Whether the job this delivery names is one of `existing`."""
        return self.claimed_job_id is not None and self.claimed_job_id in existing


@dataclass
class _Pending:
    record: DeliveryRecord
    done: asyncio.Future[bool]


class IngestWriter:
    """Stores deliveries in shared transactions; `store()` returns once its row is committed."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        max_batch: int = 400,
        on_matched: Callable[[Sequence[str]], None] | None = None,
    ) -> None:
        self._engine = engine
        self._max_batch = max_batch
        self._on_matched = on_matched
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._postgres = engine.dialect.name == "postgresql"

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="ingest-writer")

    async def close(self) -> None:
        """Finish what is queued, then stop."""
        if self._task is None:
            return
        while not self._queue.empty():
            await asyncio.sleep(0.01)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def store(self, record: DeliveryRecord) -> bool:
        """Store one delivery; True if new, False if its notification id was already stored."""
        if self._task is None or self._task.done():
            raise IngestUnavailable("ingest writer is not running")
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(record, done))
        return await done

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            await self._write_batch(batch)

    async def _write_batch(self, batch: list[_Pending]) -> None:
        try:
            outcomes, matched = await self._commit(batch)
        except Exception:
            if len(batch) == 1:
                log.exception("ingest: could not store delivery %s", batch[0].record.id)
                _fail(batch[0])
                return
            # One bad row must not fail or wrongly acknowledge the others: retry one by one.
            log.warning("ingest: batch of %d failed, storing one by one", len(batch))
            for pending in batch:
                await self._write_batch([pending])
            return
        for pending in batch:
            if not pending.done.done():
                pending.done.set_result(outcomes[id(pending)])
        if matched and self._on_matched is not None:
            self._on_matched(matched)

    async def _commit(self, batch: list[_Pending]) -> tuple[dict[int, bool], list[str]]:
        # Within a batch the first delivery of a notification id wins; the rest are duplicates.
        first: dict[str, _Pending] = {}
        rows: list[_Pending] = []
        for pending in batch:
            key = pending.record.notification_id
            if key is not None:
                if key in first:
                    continue
                first[key] = pending
            rows.append(pending)
        claimed = {p.record.claimed_job_id for p in rows if p.record.claimed_job_id}
        async with self._engine.begin() as conn:
            existing = await _existing_jobs(conn, claimed)
            inserted = await self._insert(conn, rows, existing)
            matched = [
                p.record for p in rows if p.record.id in inserted and p.record.job_id_in(existing)
            ]
            if matched:
                await _touch_jobs(conn, matched)
        outcomes = {id(p): p.record.id in inserted for p in batch}
        return outcomes, [r.claimed_job_id for r in matched if r.claimed_job_id]

    async def _insert(
        self, conn: AsyncConnection, rows: list[_Pending], existing: set[str]
    ) -> set[str]:
        values = [
            {
                "id": r.id,
                "kind": r.kind,
                "notification_id": r.notification_id,
                "event_id": r.event_id,
                "received_at": r.received_at,
                "headers": r.headers,
                "body": r.body,
                "verified": r.verified,
                "job_id": r.claimed_job_id if r.job_id_in(existing) else None,
                "claimed_job_id": r.claimed_job_id,
                "visma_job_id": r.visma_job_id,
                "problem": r.problem,
            }
            for r in (p.record for p in rows)
        ]
        insert = pg_insert if self._postgres else sqlite_insert
        statement = (
            insert(_DELIVERIES).values(values).on_conflict_do_nothing().returning(_DELIVERIES.c.id)
        )
        return set((await conn.execute(statement)).scalars())


async def _existing_jobs(conn: AsyncConnection, job_ids: set[str]) -> set[str]:
    if not job_ids:
        return set()
    query = select(_JOBS.c.id).where(_JOBS.c.id.in_(job_ids))
    return set((await conn.execute(query)).scalars())


async def _touch_jobs(conn: AsyncConnection, records: list[DeliveryRecord]) -> None:
    """Record the webhook on each matched job and make its state read due now."""
    open_job = _JOBS.c.state.in_(_OPEN_STATES)
    await conn.execute(
        update(_JOBS)
        .where(_JOBS.c.id == bindparam("b_job_id"))
        .values(
            last_webhook_at=bindparam("b_at"),
            last_modified_at=bindparam("b_at"),
            visma_job_id=func.coalesce(_JOBS.c.visma_job_id, bindparam("b_visma_job_id")),
            next_check_at=case((open_job, bindparam("b_at")), else_=_JOBS.c.next_check_at),
        ),
        [
            {"b_job_id": r.claimed_job_id, "b_at": r.received_at, "b_visma_job_id": r.visma_job_id}
            for r in records
        ],
    )
    await conn.execute(
        _EVENTS.insert(),
        [
            {
                "job_id": r.claimed_job_id,
                "at": r.received_at,
                "kind": "webhook",
                "source": "webhook",
                "detail": {"deliveryId": r.id, **r.event_detail},
            }
            for r in records
        ],
    )


def _fail(pending: _Pending) -> None:
    if not pending.done.done():
        pending.done.set_exception(IngestUnavailable("the delivery could not be stored"))
