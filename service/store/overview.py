"""What the operator's window counts: jobs per state, the poll backlog, the alert outbox.

Each is one small query (the job counts come from `job_state_counts`, never a scan of `jobs`),
cheap enough for every metrics scrape and dashboard refresh.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from service.store.models import Alert, AlertDelivery, Delivery, Job, JobStateCount, UtcDateTime

PENDING = "pending"


@dataclass(frozen=True)
class Figures:
    jobs_by_state: dict[str, int]
    open_jobs: dict[tuple[str, str | None], int]
    """Open jobs by (state, company); None: jobs stored before jobs named their company."""
    poll_backlog: int
    """Open jobs whose state read is due now (not yet claimed by a worker)."""
    outbox_depth: int
    """Alerts waiting to be sent: pending sends, and alerts due but not yet dispatched."""
    outbox_oldest: datetime | None
    """When the oldest of those was raised."""


async def figures(session: AsyncSession, *, now: datetime, open_states: Sequence[str]) -> Figures:
    """The counts of the operator's window, as of `now`."""
    states = (
        await session.execute(
            select(JobStateCount.state, func.sum(JobStateCount.delta)).group_by(JobStateCount.state)
        )
    ).all()
    open_jobs = (
        await session.execute(
            select(Job.state, Job.tenant, func.count())
            .where(Job.state.in_(open_states))
            .group_by(Job.state, Job.tenant)
        )
    ).all()
    backlog = (
        await session.execute(
            select(func.count())
            .select_from(Job)
            .where(Job.state.in_(open_states), Job.next_check_at <= now)
        )
    ).scalar_one()
    waiting = union_all(
        select(Alert.raised_at.label("raised_at"))
        .join(AlertDelivery, AlertDelivery.alert_id == Alert.id)
        .where(AlertDelivery.state == PENDING),
        select(Alert.raised_at.label("raised_at")).where(
            Alert.state == PENDING, Alert.due_at <= now
        ),
    ).subquery()
    depth, oldest = (
        await session.execute(
            select(func.count(), func.min(waiting.c.raised_at, type_=UtcDateTime()))
        )
    ).one()
    return Figures(
        jobs_by_state={state: int(total) for state, total in states if total},
        open_jobs={(state, tenant): int(count) for state, tenant, count in open_jobs},
        poll_backlog=int(backlog),
        outbox_depth=int(depth),
        outbox_oldest=oldest,
    )


@dataclass(frozen=True)
class WebhookActivity:
    last_at: datetime | None
    """When the newest Visma delivery in the inbox arrived."""
    since_count: int
    """Visma deliveries that arrived since the time asked about."""


async def webhook_activity(session: AsyncSession, *, since: datetime) -> WebhookActivity:
    """Whether Visma's webhooks arrive: the newest delivery, and how many came since `since`."""
    last_at, count = (
        await session.execute(
            select(
                func.max(Delivery.received_at, type_=UtcDateTime()),
                func.count().filter(Delivery.received_at >= since),
            ).where(Delivery.kind == "visma")
        )
    ).one()
    return WebhookActivity(last_at=last_at, since_count=int(count))
