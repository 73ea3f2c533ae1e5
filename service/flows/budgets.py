"""Recording each company's rate budget, and starting from the recorded one.

The budget lives in each process's Visma client, learnt from Visma's headers. Recorded (each
housekeeping pass), it survives a restart: a replica that starts again keeps how many share
the budget, and the CLI, which sends a request of its own, does not send into a budget that a
replica knows is spent. Times are stored as wall-clock instants and counted down on reading.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service import store
from service.flows.clock import utcnow
from service.visma import BudgetSnapshot, VismaClient


async def record_budgets(sessions: async_sessionmaker[AsyncSession], visma: VismaClient) -> int:
    """Record what this process has heard of each company's budget; how many it recorded."""
    now = utcnow()
    heard = [snapshot for snapshot in visma.budget_snapshot() if snapshot.limit is not None]
    rows = [
        {
            "tenant": snapshot.tenant,
            "limit": snapshot.limit,
            "remaining": snapshot.remaining,
            "reset_at": (
                None
                if snapshot.reset_seconds is None
                else now + timedelta(seconds=snapshot.reset_seconds)
            ),
            "paused_until": now + timedelta(seconds=snapshot.paused_seconds),
            "sharers": snapshot.sharers,
            "recorded_at": now,
        }
        for snapshot in heard
    ]
    async with sessions.begin() as session:
        await store.record_budgets(session, rows)
    return len(rows)


async def restore_budgets(sessions: async_sessionmaker[AsyncSession], visma: VismaClient) -> None:
    """Start the client's budgets from the recorded ones (those Visma has not told it of)."""
    now = utcnow()
    async with sessions.begin() as session:
        records = await store.recorded_budgets(session)
    visma.restore_budgets(
        [
            BudgetSnapshot(
                tenant=record.tenant,
                limit=record.limit,
                remaining=record.remaining,
                reset_seconds=_seconds_until(record.reset_at, now),
                paused_seconds=max(0.0, _seconds_until(record.paused_until, now) or 0.0),
                read_spacing_seconds=None,
                sharers=record.sharers,
            )
            for record in records
        ]
    )


def _seconds_until(at: datetime | None, now: datetime) -> float | None:
    return None if at is None else (at - now).total_seconds()
