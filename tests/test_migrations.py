"""Data migrations against the real database: what an upgrade keeps, and a downgrade restores."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from service import store
from service.cli import alembic_config
from tests.factories import insert_job

BEFORE_INBOX_TIMELINE = "d9a5e3c4f605"
BEFORE_JOB_COUNTS = "e1b6f4d5a706"
BEFORE_TAGS_FILTER = "f2c8a6b7e807"
BEFORE_UNIQUE_VISMA_ID = "a4e0c8d9b011"


@dataclass
class Migrating:
    engine: AsyncEngine
    config: Config

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]:
        return store.create_sessionmaker(self.engine)

    async def to(self, revision: str) -> None:
        if revision == "head":
            await asyncio.to_thread(command.upgrade, self.config, revision)
        else:
            await asyncio.to_thread(command.downgrade, self.config, revision)
        # A changed column type invalidates the statements asyncpg prepared on the pooled
        # connections, as it would a running service's (which a release restarts).
        await self.engine.dispose()


@contextlib.asynccontextmanager
async def migrating_from(url: str, revision: str) -> AsyncIterator[Migrating]:
    """The database at `url` taken back to `revision`; at head again afterwards, whatever the
    test did (the other tests expect it there)."""
    migrating = Migrating(store.create_engine(url), alembic_config(url))
    await migrating.to(revision)
    try:
        yield migrating
    finally:
        await migrating.engine.dispose()
        await migrating.to("head")


async def test_webhook_events_move_to_the_inbox_timeline_and_back(clean_database: str) -> None:
    async with migrating_from(clean_database, BEFORE_INBOX_TIMELINE) as db:
        sessions = db.sessions
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
            session.add(
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

        await db.to("head")
        async with sessions.begin() as session:
            timeline = await store.job_events(session, job_id)
        webhooks = [e.detail for e in timeline if e.kind == "webhook"]
        assert sorted(webhooks, key=str) == sorted([copied, lost], key=str)  # once each
        assert [e.kind for e in timeline].count("accepted") == 1

        await db.to(BEFORE_INBOX_TIMELINE)
        async with sessions.begin() as session:
            rows = await session.execute(
                select(store.JobEvent.detail).where(store.JobEvent.kind == "webhook")
            )
            assert sorted(rows.scalars(), key=str) == sorted([copied, lost], key=str)


async def test_job_counts_start_from_the_jobs_already_stored(clean_database: str) -> None:
    async with migrating_from(clean_database, BEFORE_JOB_COUNTS) as db:
        for state in ("accepted", "accepted", "failed"):
            await insert_job(db.sessions, state=state)
        await db.to("head")
        await insert_job(db.sessions, state="failed")  # counted by the triggers from now on
        async with db.sessions.begin() as session:
            assert await store.count_jobs_in(session, ("accepted",)) == 2
            assert await store.count_jobs_in(session, ("failed",)) == 2
            assert await store.count_jobs_in(session) == 4


async def test_job_tags_survive_the_tag_filter_migration_both_ways(clean_database: str) -> None:
    """PostgreSQL's tags become jsonb (and back); SQLite's get an index: the tags, and what
    a tag filter finds, stay the same either way."""
    tags = {"team": "t7", "env": "prod-1"}

    async def found(db: Migrating) -> list[tuple[str, dict[str, str], int]]:
        async with db.sessions.begin() as session:
            rows, total = await store.list_jobs(
                session, states=["failed"], tags={"team": "t7"}, limit=10, offset=0
            )
            return [(job.id, job.tags, total) for job in rows]

    async def found_in_older_schema(db: Migrating) -> list[tuple[str, dict[str, str]]]:
        # The same tag filter, naming only columns the older schema has (the model has more).
        query = select(store.Job.id, store.Job.tags).where(
            store.Job.state == "failed", store.Job.tags["team"].as_string() == "t7"
        )
        async with db.sessions.begin() as session:
            return [(row.id, row.tags) for row in await session.execute(query)]

    async with migrating_from(clean_database, BEFORE_TAGS_FILTER) as db:
        tagged = await insert_job(db.sessions, state="failed", tags=tags)
        await insert_job(db.sessions, state="failed", tags={"team": "t8"})
        await db.to("head")
        assert await found(db) == [(tagged, tags, 1)]
        await db.to(BEFORE_TAGS_FILTER)
        assert await found_in_older_schema(db) == [(tagged, tags)]


async def test_a_visma_job_id_two_jobs_held_stays_with_the_one_accepted_first(
    clean_database: str,
) -> None:
    """A forged webhook could once hand one job's Visma id to another: the upgrade keeps it on
    the job accepted first, and says so on the other's timeline."""
    earlier = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    later = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    async with migrating_from(clean_database, BEFORE_UNIQUE_VISMA_ID) as db:
        first = await insert_job(
            db.sessions, state="failed", visma_job_id="v-1", accepted_at=earlier
        )
        second = await insert_job(
            db.sessions, state="failed", visma_job_id="v-1", submitted_at=later, accepted_at=None
        )
        alone = await insert_job(db.sessions, visma_job_id="v-2")
        await db.to("head")
        async with db.sessions.begin() as session:
            holders = {
                job_id: (await store.get_job(session, job_id)).visma_job_id  # type: ignore[union-attr]
                for job_id in (first, second, alone)
            }
            cleared = await store.last_event(session, second, "visma_id_cleared")
        assert holders == {first: "v-1", second: None, alone: "v-2"}
        assert cleared is not None and cleared.detail["vismaJobId"] == "v-1"
        # From now on the schema refuses a second holder.
        with pytest.raises(IntegrityError):
            await insert_job(db.sessions, visma_job_id="v-2")
