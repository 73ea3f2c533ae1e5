"""Data migrations against the real database: what an upgrade keeps, and a downgrade restores."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

from alembic import command
from sqlalchemy import select

from service import store
from service.cli import alembic_config
from tests.factories import insert_job

BEFORE_INBOX_TIMELINE = "d9a5e3c4f605"


async def test_webhook_events_move_to_the_inbox_timeline_and_back(clean_database: str) -> None:
    config = alembic_config(clean_database)
    await asyncio.to_thread(command.downgrade, config, BEFORE_INBOX_TIMELINE)
    engine = store.create_engine(clean_database)
    sessions = store.create_sessionmaker(engine)
    try:
        # What the old ingest writer left: a matched delivery and its copy in job_events,
        # beside an event of the job's own and a webhook event whose delivery is gone.
        job_id = await insert_job(sessions)
        at = datetime.now(UTC)
        delivery_id = str(uuid.uuid4())
        copied = {"deliveryId": delivery_id, "notificationId": "n-1", "vismaJobId": "v-1"}
        lost = {"deliveryId": "pruned", "notificationId": "n-0", "vismaJobId": "v-1"}
        async with sessions.begin() as session:
            await store.add_event(session, job_id, kind="accepted", source="submit", at=at)
            await store.add_event(
                session, job_id, kind="webhook", source="webhook", at=at, detail=lost
            )
            await store.add_delivery(
                session,
                store.Delivery(
                    id=delivery_id,
                    kind="visma",
                    notification_id="n-1",
                    received_at=at,
                    headers={},
                    body=b"{}",
                    verified=True,
                    job_id=job_id,
                    claimed_job_id=job_id,
                    visma_job_id="v-1",
                ),
            )
            await store.add_event(
                session, job_id, kind="webhook", source="webhook", at=at, detail=copied
            )

        await asyncio.to_thread(command.upgrade, config, "head")
        async with sessions.begin() as session:
            timeline = await store.job_events(session, job_id)
        webhooks = [e.detail for e in timeline if e.kind == "webhook"]
        assert sorted(webhooks, key=str) == sorted([copied, lost], key=str)  # once each
        assert [e.kind for e in timeline].count("accepted") == 1

        await asyncio.to_thread(command.downgrade, config, BEFORE_INBOX_TIMELINE)
        async with sessions.begin() as session:
            rows = await session.execute(
                select(store.JobEvent.detail).where(store.JobEvent.kind == "webhook")
            )
            assert sorted(rows.scalars(), key=str) == sorted([copied, lost], key=str)
    finally:
        await engine.dispose()
        await asyncio.to_thread(command.upgrade, config, "head")


BEFORE_JOB_COUNTS = "e1b6f4d5a706"


async def test_job_counts_start_from_the_jobs_already_stored(clean_database: str) -> None:
    config = alembic_config(clean_database)
    await asyncio.to_thread(command.downgrade, config, BEFORE_JOB_COUNTS)
    engine = store.create_engine(clean_database)
    sessions = store.create_sessionmaker(engine)
    try:
        for state in ("accepted", "accepted", "failed"):
            await insert_job(sessions, state=state)
        await asyncio.to_thread(command.upgrade, config, "head")
        await insert_job(sessions, state="failed")  # counted by the triggers from now on
        async with sessions.begin() as session:
            assert await store.count_jobs_in(session, ("accepted",)) == 2
            assert await store.count_jobs_in(session, ("failed",)) == 2
            assert await store.count_jobs_in(session) == 4
    finally:
        await engine.dispose()
        await asyncio.to_thread(command.upgrade, config, "head")
