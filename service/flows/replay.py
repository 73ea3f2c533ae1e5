"""Replaying a stored webhook delivery: correlation and resolution run again on what was kept.

Useful after a fix (a delivery that could not be linked then can be now) or to make a job's
state read happen now. It is idempotent: the delivery's link is recomputed by the inbox's own
rules, an open job's state is read from Visma (which decides, never the body), and a settled
job stays settled. Every replay is an entry in the job's timeline.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service import store
from service.domain import (
    OPEN_STATES,
    EventKind,
    InvalidState,
    NotFound,
    decide_replay_link,
    job_id_from_headers,
    read_background_body,
)
from service.flows.clock import utcnow
from service.flows.resolve import ResolveSettings, read_and_apply
from service.visma import VismaClient

VISMA_KIND = "visma"
DELIVERY_NOT_FOUND = "no delivery with id {delivery_id!r}"
NOT_A_VISMA_DELIVERY = "delivery {delivery_id} is a {kind} delivery: only Visma's are replayed"
REPLAY_BATCH = 100

_OPEN = frozenset(s.value for s in OPEN_STATES)


@dataclass(frozen=True)
class Replayed:
    """What a replay did: the delivery, the job it is linked to now (if any), and whether the
    job's state was read."""

    delivery_id: str
    job_id: str | None
    state_read: bool


async def replay_delivery(
    sessions: async_sessionmaker[AsyncSession],
    visma: VismaClient,
    delivery_id: str,
    *,
    settings: ResolveSettings,
    source: str,
) -> Replayed:
    """Run one stored delivery through correlation and resolution again."""
    now = utcnow()
    claimed: store.ClaimedJob | None = None
    async with sessions.begin() as session:
        delivery = await store.get_inbox_delivery(session, delivery_id, for_update=True)
        if delivery is None:
            raise NotFound(DELIVERY_NOT_FOUND.format(delivery_id=delivery_id))
        if delivery.kind != VISMA_KIND:
            raise InvalidState(
                NOT_A_VISMA_DELIVERY.format(delivery_id=delivery_id, kind=delivery.kind)
            )
        named = job_id_from_headers(delivery.headers) if delivery.verified else None
        notice, body_problem = read_background_body(delivery.body)
        body_visma_id = notice.visma_job_id if notice else None
        job = await store.get_job(session, named, for_update=True) if named else None
        holder = await store.job_holding(session, body_visma_id) if body_visma_id else None
        link = decide_replay_link(
            named_job_id=named,
            body_problem=body_problem,
            body_visma_id=body_visma_id,
            job_state=job.state if job else None,
            job_visma_id=job.visma_job_id if job else None,
            visma_id_holder=holder,
        )
        delivery.job_id = link.job_id
        delivery.problem = link.problem if delivery.verified else delivery.problem
        if job is not None:
            read_now = link.job_id is not None and job.state in _OPEN
            await store.add_event(
                session,
                job.id,
                kind=EventKind.REPLAYED,
                source=source,
                at=now,
                detail={
                    "deliveryId": delivery_id,
                    "linked": link.job_id is not None,
                    **({"problem": link.problem} if link.problem else {}),
                    "note": (
                        "its state is read again now"
                        if read_now
                        else f"the job is {job.state}: nothing changes"
                        if link.job_id is not None
                        else "not linked: the job does not change"
                    ),
                },
            )
            if read_now:
                # Claimed as the resolver claims: no other worker reads it meanwhile.
                job.last_webhook_at = max(job.last_webhook_at or now, delivery.received_at)
                job.next_check_at = now + timedelta(seconds=settings.lease_seconds)
                job.check_attempts += 1
                claimed = store.ClaimedJob(job.id, job.visma_job_id, job.submitted_at, now)
    if claimed is not None:
        await read_and_apply(sessions, visma, claimed, settings)
    return Replayed(delivery_id, link.job_id, claimed is not None)


async def replay_since(
    sessions: async_sessionmaker[AsyncSession],
    visma: VismaClient,
    since: datetime,
    *,
    settings: ResolveSettings,
    source: str,
) -> list[Replayed]:
    """Replay every Visma delivery received at or after `since`, oldest id first."""
    done: list[Replayed] = []
    after: str | None = None
    while True:
        async with sessions.begin() as session:
            ids = await store.inbox_ids_since(
                session, since, kind=VISMA_KIND, after=after, limit=REPLAY_BATCH
            )
        for delivery_id in ids:
            done.append(
                await replay_delivery(
                    sessions, visma, delivery_id, settings=settings, source=source
                )
            )
        if len(ids) < REPLAY_BATCH:
            return done
        after = ids[-1]
