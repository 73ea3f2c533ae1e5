"""The ingest writer's batches against a real database: dedupe, correlation, a bad row."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service import store
from service.store import DeliveryRecord, IngestUnavailable, IngestWriter, Stored
from service.web.webhooks import delivery_record
from tests.factories import insert_job
from tests.harness import signed_delivery


@dataclasses.dataclass
class Writer:
    ingest: IngestWriter
    sessions: async_sessionmaker[AsyncSession]
    woken: list[Sequence[str]]


@pytest.fixture(name="writer")
async def fixture_writer(clean_database: str):
    engine = store.create_engine(clean_database)
    woken: list[Sequence[str]] = []
    ingest = IngestWriter(engine, on_matched=woken.append)
    await ingest.start()
    try:
        yield Writer(ingest, store.create_sessionmaker(engine), woken)
    finally:
        await ingest.close()
        await engine.dispose()


async def make_job(writer: Writer, state: str = "accepted") -> str:
    return await insert_job(writer.sessions, state=state)


def record(*, job_id: str | None = None, notification_id: str | None = None) -> DeliveryRecord:
    body, headers = signed_delivery(job_id=job_id, notification_id=notification_id)
    return delivery_record(headers, body)


async def stored_ids(writer: Writer) -> set[str]:
    async with writer.sessions.begin() as session:
        return set((await session.execute(select(store.Delivery.id))).scalars())


async def webhook_events(writer: Writer, job_id: str) -> list[dict]:
    async with writer.sessions.begin() as session:
        events = await store.job_events(session, job_id)
    return [e.detail or {} for e in events if e.kind == "webhook"]


async def test_store_many_one_notification_twice_in_a_batch_stores_one(writer: Writer) -> None:
    job_id = await make_job(writer)
    first = record(job_id=job_id, notification_id="n-1")
    again = record(job_id=job_id, notification_id="n-1")
    other = record(job_id=job_id)
    outcomes = await writer.ingest.store_many([first, again, other])
    assert outcomes == [Stored.NEW, Stored.DUPLICATE, Stored.NEW]
    assert await stored_ids(writer) == {first.id, other.id}
    # The job heard of each stored delivery once, in the same transaction.
    assert [e["deliveryId"] for e in await webhook_events(writer, job_id)] == [first.id, other.id]
    async with writer.sessions.begin() as session:
        job = await store.get_job(session, job_id)
    assert job is not None
    assert job.visma_job_id == first.visma_job_id  # the first one's, as if applied in order
    assert job.last_webhook_at == other.received_at == job.next_check_at
    assert writer.woken == [[job_id]]  # once, after the commit


async def test_store_a_webhook_for_a_finished_job_is_kept_but_wakes_nobody(
    writer: Writer,
) -> None:
    job_id = await make_job(writer, state="succeeded")
    late = record(job_id=job_id)
    assert await writer.ingest.store(late) is True
    assert [e["deliveryId"] for e in await webhook_events(writer, job_id)] == [late.id]
    async with writer.sessions.begin() as session:
        job = await store.get_job(session, job_id)
    assert job is not None and job.last_webhook_at == late.received_at
    assert job.next_check_at is None  # nothing to read: the outcome is known
    assert writer.woken == []


async def test_store_many_a_duplicate_of_a_committed_delivery_changes_nothing(
    writer: Writer,
) -> None:
    job_id = await make_job(writer)
    first = record(job_id=job_id, notification_id="n-2")
    assert await writer.ingest.store(first) is True
    again = dataclasses.replace(record(job_id=job_id), notification_id="n-2")
    assert await writer.ingest.store_many([again, record()]) == [Stored.DUPLICATE, Stored.NEW]
    assert len(await webhook_events(writer, job_id)) == 1


async def test_store_many_a_bad_row_fails_alone(writer: Writer) -> None:
    job_id = await make_job(writer)
    earlier = record()
    assert await writer.ingest.store(earlier) is True
    writer.woken.clear()
    good = record(job_id=job_id)
    # Same primary key as a stored delivery, new notification id: the insert violates a
    # constraint that ON CONFLICT (notification_id) does not cover, so the batch fails.
    bad = dataclasses.replace(record(job_id=job_id), id=earlier.id)
    also_good = record()
    outcomes = await writer.ingest.store_many([good, bad, also_good])
    assert outcomes == [Stored.NEW, Stored.FAILED, Stored.NEW]
    assert await stored_ids(writer) == {earlier.id, good.id, also_good.id}
    assert [e["deliveryId"] for e in await webhook_events(writer, job_id)] == [good.id]
    assert writer.woken == [[job_id]]
    # The writer goes on as before.
    assert await writer.ingest.store(record()) is True


async def test_store_many_a_copy_of_a_failed_row_is_not_called_a_duplicate(
    writer: Writer,
) -> None:
    earlier = record()
    assert await writer.ingest.store(earlier) is True
    bad = dataclasses.replace(record(notification_id="n-3"), id=earlier.id)
    copy = record(notification_id="n-3")
    # The first copy of n-3 is not stored, so the second is stored, not acknowledged as a copy.
    assert await writer.ingest.store_many([bad, copy]) == [Stored.FAILED, Stored.NEW]
    assert await stored_ids(writer) == {earlier.id, copy.id}


async def test_store_a_lone_bad_row_is_unavailable(writer: Writer) -> None:
    earlier = record()
    assert await writer.ingest.store(earlier) is True
    with pytest.raises(IngestUnavailable):
        await writer.ingest.store(dataclasses.replace(record(), id=earlier.id))
    async with writer.sessions.begin() as session:
        count = await session.execute(select(func.count()).select_from(store.Delivery))
        assert count.scalar_one() == 1


async def test_store_after_close_is_unavailable(writer: Writer) -> None:
    await writer.ingest.close()
    with pytest.raises(IngestUnavailable):
        await writer.ingest.store(record())


async def test_store_many_leaves_a_settled_job_alone_but_shows_the_webhook(writer: Writer) -> None:
    # A finished job whose Visma job id is known: a webhook can change nothing on it, so its
    # row is not written (not even its times); its timeline still shows every delivery. In
    # the same batch an open job is still made due.
    settled = await make_job(writer, state="succeeded")
    open_job = await make_job(writer)
    first = record(job_id=settled)
    assert await writer.ingest.store(first) is True
    async with writer.sessions.begin() as session:
        before = await store.get_job(session, settled)
    assert before is not None and before.visma_job_id == first.visma_job_id
    assert before.last_webhook_at == before.last_modified_at == first.received_at
    again, other = record(job_id=settled), record(job_id=open_job)
    assert await writer.ingest.store_many([again, other]) == [Stored.NEW, Stored.NEW]
    async with writer.sessions.begin() as session:
        job = await store.get_job(session, settled)
        opened = await store.get_job(session, open_job)
    assert job is not None and opened is not None
    columns = [c.key for c in store.Job.__table__.columns]
    assert {c: getattr(job, c) for c in columns} == {c: getattr(before, c) for c in columns}
    assert opened.next_check_at == opened.last_webhook_at == other.received_at
    events = await webhook_events(writer, settled)
    assert [e["deliveryId"] for e in events] == [first.id, again.id]
    assert events[1] == {
        "deliveryId": again.id,
        "notificationId": again.notification_id,
        "vismaJobId": again.visma_job_id,
    }
    assert writer.woken == [[open_job]]
