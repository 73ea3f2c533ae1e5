"""Bulk operations: an issue's jobs re-sent after the cause was fixed, or a window of
deliveries replayed, started by a person and run by whichever replica holds its lease.

A resend writes, per step and in one transaction, the new jobs (to send, as a batch's are:
the state-read worker sends them as each company's rate budget allows) and on each old job the
job that re-sent it. The step's jobs are taken only while they have none, under a lock, so a
job is never re-sent twice, whoever runs the step and however often a replica dies. A replay
step replays each delivery as the single replay does (idempotent: one cut short and run
again changes nothing twice), committing where it got to after each.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service import store
from service.domain import (
    UNFINISHED,
    EventKind,
    InvalidState,
    NotFound,
    OperationKind,
    OperationState,
    ReplayWindow,
)
from service.flows.batch import job_to_send
from service.flows.clock import utcnow
from service.flows.replay import VISMA_KIND, replay_delivery
from service.flows.resolve import ResolveSettings
from service.visma import VismaClient

NO_ISSUE = "no issue with id {issue_id!r}"
NO_OPERATION = "no operation with id {operation_id!r}"
OPERATION_ENDED = "operation {operation_id} is {state}: only a queued or running one is cancelled"
RESEND_STEP = 100
"""Jobs re-sent per transaction."""
REPLAY_STEP = 50
"""Delivery ids a replay reads at a time (it commits its progress after each delivery)."""


@dataclass(frozen=True)
class OperationRun:
    """What a replica needs to run operations: who it is, and for how long a claim holds."""

    owner: str
    lease_seconds: float = 30.0
    resolve: ResolveSettings | None = None
    """How a replay reads a job's state (a resend needs nothing of it)."""
    items_per_second: float | None = None
    """At most this many items a second (OPERATION_ITEMS_PER_SECOND): a step's rows share
    the database with the webhook path (on SQLite, its one write lock)."""


async def preview_resend(
    session: AsyncSession, issue_id: str, *, limit: int
) -> tuple[int, list[str]]:
    """How many of the issue's jobs a resend would take now, and the first `limit` of them."""
    if await store.get_issue(session, issue_id) is None:
        raise NotFound(NO_ISSUE.format(issue_id=issue_id))
    now = utcnow()
    count = await store.count_resend_candidates(session, issue_id, before=now)
    ids = await store.resend_candidate_ids(session, issue_id, before=now, limit=limit)
    return count, ids


async def start_resend(session: AsyncSession, issue_id: str) -> store.Operation:
    """A queued operation re-sending the issue's jobs not re-sent yet (as they are now)."""
    if await store.get_issue(session, issue_id) is None:
        raise NotFound(NO_ISSUE.format(issue_id=issue_id))
    now = utcnow()
    total = await store.count_resend_candidates(session, issue_id, before=now)
    return await _add(session, OperationKind.RESEND, {"issueId": issue_id}, total=total, at=now)


async def start_replay(session: AsyncSession, window: ReplayWindow) -> store.Operation:
    """A queued operation replaying every Visma delivery received in the window."""
    total = await store.count_inbox_between(
        session, kind=VISMA_KIND, since=window.since, until=window.until, tenant=window.tenant
    )
    return await _add(session, OperationKind.REPLAY, window.as_json(), total=total, at=utcnow())


async def cancel_operation(session: AsyncSession, operation_id: str) -> store.Operation:
    """Stop the operation before its next step (what was done stays done)."""
    operation = await store.get_operation(session, operation_id, for_update=True)
    if operation is None:
        raise NotFound(NO_OPERATION.format(operation_id=operation_id))
    if operation.state == OperationState.CANCELLED:
        return operation
    if operation.state not in UNFINISHED:
        raise InvalidState(OPERATION_ENDED.format(operation_id=operation_id, state=operation.state))
    operation.state = OperationState.CANCELLED
    operation.finished_at = utcnow()
    operation.lease_until = None
    return operation


async def _add(
    session: AsyncSession,
    kind: OperationKind,
    origin: dict[str, object],
    *,
    total: int,
    at: datetime,
) -> store.Operation:
    return await store.add_operation(
        session,
        store.Operation(
            id=str(uuid.uuid4()),
            kind=kind.value,
            state=OperationState.QUEUED.value if total else OperationState.DONE.value,
            origin=origin,
            total=total,
            done=0,
            failed=0,
            created_at=at,
            snapshot_at=at,
            finished_at=None if total else at,
        ),
    )


async def run_next_operation(
    sessions: async_sessionmaker[AsyncSession],
    visma: VismaClient,
    run: OperationRun,
    *,
    operation_id: str | None = None,
    on_step: Callable[[store.Operation], None] | None = None,
) -> bool:
    """Claim one operation whose lease is free (the oldest, or `operation_id`) and run it to
    its end (or until it is cancelled, or another replica took it over); whether there was
    one. `on_step` sees the operation after each committed step (a progress bar)."""
    now = utcnow()
    async with sessions.begin() as session:
        operation = await store.claim_operation(
            session,
            owner=run.owner,
            now=now,
            lease_until=now + timedelta(seconds=run.lease_seconds),
            states=UNFINISHED,
            operation_id=operation_id,
        )
        if operation is None:
            return False
        operation.state = OperationState.RUNNING
        operation.started_at = operation.started_at or now
        operation_id, kind = str(operation.id), operation.kind
    while True:
        began = time.monotonic()
        if kind == OperationKind.RESEND:
            more = await _resend_step(sessions, operation_id, run)
        else:
            more = await _replay_step(sessions, visma, operation_id, run)
        if on_step is not None:
            async with sessions.begin() as session:
                progress = await store.get_operation(session, operation_id)
            if progress is not None:
                on_step(progress)
        if not more:
            return True
        if run.items_per_second:
            step = RESEND_STEP if kind == OperationKind.RESEND else REPLAY_STEP
            await asyncio.sleep(max(0.0, step / run.items_per_second - (time.monotonic() - began)))


async def _owned(
    session: AsyncSession, operation_id: str, run: OperationRun
) -> store.Operation | None:
    """The operation, locked, while it is still ours to run (not cancelled, not taken over);
    its lease renewed."""
    operation = await store.get_operation(session, operation_id, for_update=True)
    if (
        operation is None
        or operation.state != OperationState.RUNNING
        or operation.lease_owner != run.owner
    ):
        return None
    operation.lease_until = utcnow() + timedelta(seconds=run.lease_seconds)
    return operation


def _finish(operation: store.Operation) -> None:
    operation.state = OperationState.DONE
    operation.finished_at = utcnow()
    operation.lease_until = None


async def _resend_step(
    sessions: async_sessionmaker[AsyncSession], operation_id: str, run: OperationRun
) -> bool:
    """Re-send the next RESEND_STEP jobs; whether any may be left."""
    async with sessions.begin() as session:
        operation = await _owned(session, operation_id, run)
        if operation is None:
            return False
        issue_id = str(operation.origin["issueId"])
        old_jobs = await store.lock_resend_candidates(
            session, issue_id, before=operation.snapshot_at, limit=RESEND_STEP
        )
        urls = await store.callback_urls(session, [job.id for job in old_jobs])
        await _resend(session, operation_id, old_jobs, urls)
        operation.done += len(old_jobs)
        if len(old_jobs) < RESEND_STEP:
            _finish(operation)
            return False
        return True


async def _resend(
    session: AsyncSession,
    operation_id: str,
    old_jobs: Sequence[store.Job],
    urls: dict[str, str],
) -> None:
    now = utcnow()
    jobs, events, callbacks = [], [], []
    for old in old_jobs:
        new_id = str(uuid.uuid4())
        # On the locked row: written with the new job, in this transaction.
        old.resent_as = new_id
        jobs.append(
            job_to_send(
                new_id,
                method=old.method,
                path=old.path,
                body=old.request_body,
                tags=dict(old.tags or {}),
                if_match=old.if_match,
                notify=old.notify,
                tenant=old.tenant,
                at=now,
                resent_from=old.id,
            )
        )
        events.append(
            {
                "job_id": new_id,
                "kind": EventKind.SUBMITTED.value,
                "source": "operation",
                "at": now,
                "detail": {
                    "method": old.method,
                    "path": old.path,
                    "resentFrom": old.id,
                    "operationId": operation_id,
                    "note": "re-sent in bulk: sent as the company's rate budget allows",
                },
            }
        )
        events.append(
            {
                "job_id": old.id,
                "kind": EventKind.RESENT.value,
                "source": "operation",
                "at": now,
                "detail": {"newJobId": new_id, "operationId": operation_id},
            }
        )
        if old.id in urls:
            callbacks.append({"job_id": new_id, "url": urls[old.id]})
    await store.add_jobs_to_send(session, jobs, events, callbacks)


async def _replay_step(
    sessions: async_sessionmaker[AsyncSession],
    visma: VismaClient,
    operation_id: str,
    run: OperationRun,
) -> bool:
    """Replay the next REPLAY_STEP deliveries of the window; whether any may be left."""
    async with sessions.begin() as session:
        operation = await _owned(session, operation_id, run)
        if operation is None:
            return False
        window = ReplayWindow.from_json(operation.origin)
        ids = await store.inbox_ids_between(
            session,
            kind=VISMA_KIND,
            since=window.since,
            until=window.until,
            tenant=window.tenant,
            after=operation.cursor,
            limit=REPLAY_STEP,
        )
    for delivery_id in ids:
        failed = False
        try:
            await replay_delivery(
                sessions,
                visma,
                delivery_id,
                settings=run.resolve or ResolveSettings(),
                source="operation",
            )
        except (NotFound, InvalidState):
            failed = True  # gone since (retention), or no longer a Visma delivery
        # Progress after each delivery (a state read may take a minute): the lease is renewed
        # as often, and a replica that takes over starts after the last one done.
        async with sessions.begin() as session:
            operation = await _owned(session, operation_id, run)
            if operation is None:
                return False
            operation.failed += failed
            operation.done += not failed
            operation.cursor = delivery_id
    if len(ids) < REPLAY_STEP:
        async with sessions.begin() as session:
            operation = await _owned(session, operation_id, run)
            if operation is not None:
                _finish(operation)
        return False
    return True
