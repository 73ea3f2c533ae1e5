"""The ingest writer's batches against a real database: dedupe, correlation, a bad row."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Sequence

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service import store
from service.domain import LINK_RULES
from service.domain.deliveries import (
    PROBLEM_CANNOT_ADOPT,
    PROBLEM_VISMA_ID_DIFFERS,
    PROBLEM_VISMA_ID_TAKEN,
)
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
    ingest = IngestWriter(engine, rules=LINK_RULES, on_matched=woken.append)
    await ingest.start()
    try:
        yield Writer(ingest, store.create_sessionmaker(engine), woken)
    finally:
        await ingest.close()
        await engine.dispose()


async def make_job(writer: Writer, state: str = "accepted", **fields: object) -> str:
    """A job; past `submitted` it has a Visma job id (`v-<its id>`), as after its 202."""
    if state != "submitted":
        fields.setdefault("visma_job_id", f"v-{uuid.uuid4()}")
    return await insert_job(writer.sessions, state=state, **fields)


async def visma_id_of(writer: Writer, job_id: str) -> str | None:
    job = await load_job(writer, job_id)
    return job.visma_job_id


async def load_job(writer: Writer, job_id: str) -> store.Job:
    async with writer.sessions.begin() as session:
        job = await store.get_job(session, job_id)
    assert job is not None
    return job


def record(
    *,
    job_id: str | None = None,
    notification_id: str | None = None,
    visma_job_id: str | None = None,
    body: bytes | None = None,
) -> DeliveryRecord:
    """A verified delivery naming `job_id` in its header, its body naming `visma_job_id`."""
    if body is None:
        visma_job_id = visma_job_id or str(uuid.uuid4())
        body = json.dumps({"id": visma_job_id, "stateLocation": f"/v1/background/{visma_job_id}"})
        body = body.encode()
    raw, headers = signed_delivery(body, job_id=job_id, notification_id=notification_id)
    return delivery_record(headers, raw)


async def inbox_row(writer: Writer, delivery_id: str) -> store.Delivery:
    async with writer.sessions.begin() as session:
        row = await session.get(store.Delivery, delivery_id)
    assert row is not None
    return row


async def stored_ids(writer: Writer) -> set[str]:
    async with writer.sessions.begin() as session:
        return set((await session.execute(select(store.Delivery.id))).scalars())


async def webhook_events(writer: Writer, job_id: str) -> list[dict]:
    async with writer.sessions.begin() as session:
        events = await store.job_events(session, job_id)
    return [e.detail or {} for e in events if e.kind == "webhook"]


async def test_store_many_one_notification_twice_in_a_batch_stores_one(writer: Writer) -> None:
    job_id = await make_job(writer)
    visma_id = await visma_id_of(writer, job_id)
    first = record(job_id=job_id, notification_id="n-1", visma_job_id=visma_id)
    again = record(job_id=job_id, notification_id="n-1", visma_job_id=visma_id)
    other = record(job_id=job_id, visma_job_id=visma_id)
    outcomes = await writer.ingest.store_many([first, again, other])
    assert outcomes == [Stored.NEW, Stored.DUPLICATE, Stored.NEW]
    assert await stored_ids(writer) == {first.id, other.id}
    # The job heard of each stored delivery once, in the same transaction.
    assert [e["deliveryId"] for e in await webhook_events(writer, job_id)] == [first.id, other.id]
    job = await load_job(writer, job_id)
    assert job.visma_job_id == visma_id
    assert job.last_webhook_at == other.received_at == job.next_check_at
    assert writer.woken == [[job_id]]  # once, after the commit


async def test_store_a_webhook_for_a_finished_job_is_kept_but_wakes_nobody(
    writer: Writer,
) -> None:
    job_id = await make_job(writer, state="succeeded")
    late = record(job_id=job_id, visma_job_id=await visma_id_of(writer, job_id))
    assert await writer.ingest.store(late) is True
    assert [e["deliveryId"] for e in await webhook_events(writer, job_id)] == [late.id]
    job = await load_job(writer, job_id)
    assert job.last_webhook_at is None  # the inbox row is the record; the job is not written
    assert job.next_check_at is None  # nothing to read: the outcome is known
    assert writer.woken == []


async def test_store_many_a_duplicate_of_a_committed_delivery_changes_nothing(
    writer: Writer,
) -> None:
    job_id = await make_job(writer)
    visma_id = await visma_id_of(writer, job_id)
    first = record(job_id=job_id, notification_id="n-2", visma_job_id=visma_id)
    assert await writer.ingest.store(first) is True
    again = dataclasses.replace(record(job_id=job_id, visma_job_id=visma_id), notification_id="n-2")
    assert await writer.ingest.store_many([again, record()]) == [Stored.DUPLICATE, Stored.NEW]
    assert len(await webhook_events(writer, job_id)) == 1


async def test_store_many_a_bad_row_fails_alone(writer: Writer) -> None:
    job_id = await make_job(writer)
    visma_id = await visma_id_of(writer, job_id)
    earlier = record()
    assert await writer.ingest.store(earlier) is True
    writer.woken.clear()
    good = record(job_id=job_id, visma_job_id=visma_id)
    # Same primary key as a stored delivery, new notification id: the insert violates a
    # constraint that ON CONFLICT (notification_id) does not cover, so the batch fails.
    bad = dataclasses.replace(record(job_id=job_id, visma_job_id=visma_id), id=earlier.id)
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


async def test_store_many_leaves_a_finished_job_alone_but_shows_the_webhook(
    writer: Writer,
) -> None:
    # A webhook can change nothing on a finished job, so its row is not written (not even its
    # times); its timeline still shows every delivery. In the same batch an open job is still
    # made due.
    settled = await make_job(writer, state="succeeded")
    open_job = await make_job(writer)
    before = await load_job(writer, settled)
    first = record(job_id=settled, visma_job_id=before.visma_job_id)
    assert await writer.ingest.store(first) is True
    again = record(job_id=settled, visma_job_id=before.visma_job_id)
    other = record(job_id=open_job, visma_job_id=await visma_id_of(writer, open_job))
    assert await writer.ingest.store_many([again, other]) == [Stored.NEW, Stored.NEW]
    job, opened = await load_job(writer, settled), await load_job(writer, open_job)
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


async def assert_unlinked(writer: Writer, delivery: DeliveryRecord, problem: str) -> None:
    """The delivery is in the inbox, linked to no job, with `problem` named."""
    row = await inbox_row(writer, delivery.id)
    assert (row.job_id, row.claimed_job_id, row.problem) == (None, delivery.claimed_job_id, problem)


async def test_store_a_body_naming_another_visma_id_than_the_jobs_changes_no_job(
    writer: Writer,
) -> None:
    job_id = await make_job(writer)
    before = await load_job(writer, job_id)
    forged = record(job_id=job_id, visma_job_id=str(uuid.uuid4()))
    assert await writer.ingest.store(forged) is True
    await assert_unlinked(writer, forged, PROBLEM_VISMA_ID_DIFFERS)
    after = await load_job(writer, job_id)
    assert (after.visma_job_id, after.last_webhook_at, after.next_check_at) == (
        before.visma_job_id,
        None,
        before.next_check_at,
    )
    assert await webhook_events(writer, job_id) == []
    assert writer.woken == []


async def test_store_a_body_naming_a_visma_id_another_job_holds_changes_no_job(
    writer: Writer,
) -> None:
    holder = await make_job(writer, state="failed")
    waiting = await make_job(writer, state="submitted")  # its 202 never came
    replayed = record(job_id=waiting, visma_job_id=await visma_id_of(writer, holder))
    assert await writer.ingest.store(replayed) is True
    await assert_unlinked(writer, replayed, PROBLEM_VISMA_ID_TAKEN)
    job = await load_job(writer, waiting)
    assert (job.visma_job_id, job.last_webhook_at) == (None, None)
    assert writer.woken == []


@pytest.mark.parametrize("state", ["rejected", "expired"])
async def test_store_a_job_past_submitted_without_a_visma_id_adopts_none(
    writer: Writer, state: str
) -> None:
    job_id = await make_job(writer, state=state, visma_job_id=None)
    stray = record(job_id=job_id)
    assert await writer.ingest.store(stray) is True
    await assert_unlinked(writer, stray, PROBLEM_CANNOT_ADOPT)
    assert (await load_job(writer, job_id)).visma_job_id is None


async def test_store_a_submitted_job_without_a_visma_id_is_linked_for_the_resolver_to_check(
    writer: Writer,
) -> None:
    # Its 202 was lost: the webhook may tell its Visma job id, but only the resolver adopts it,
    # once Visma's state for that id matches the job's request.
    job_id = await make_job(writer, state="submitted")
    webhook = record(job_id=job_id)
    assert await writer.ingest.store(webhook) is True
    row = await inbox_row(writer, webhook.id)
    assert (row.job_id, row.visma_job_id, row.problem) == (job_id, webhook.visma_job_id, None)
    job = await load_job(writer, job_id)
    assert job.visma_job_id is None
    assert job.next_check_at == job.last_webhook_at == webhook.received_at
    assert writer.woken == [[job_id]]


async def test_store_an_unusable_body_is_linked_and_makes_the_jobs_own_read_due(
    writer: Writer,
) -> None:
    job_id = await make_job(writer)
    unusable = record(job_id=job_id, body=b"<html>not json</html>")
    assert await writer.ingest.store(unusable) is True
    row = await inbox_row(writer, unusable.id)
    assert (row.job_id, row.problem) == (job_id, "body is not JSON")
    assert (await load_job(writer, job_id)).next_check_at == unusable.received_at
    assert writer.woken == [[job_id]]
