"""Retention against a real database: what goes, what stays, and what a purge never breaks."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service import store
from service.cli import main
from service.domain import LINK_RULES, Retention
from service.flows import PurgeSettings, purge, purge_for_a_while
from service.store import DeliveryRecord, IngestWriter, Stored
from service.web.webhooks import delivery_record
from service.workers import HousekeepingWorker
from tests.factories import insert_job
from tests.harness import in_process, signed_delivery
from tests.test_metrics import value as metric_value

SECONDS = 1 / 86400
"""One second, in the days the retention settings count."""
RETENTION = Retention(
    deliveries_days=10 * SECONDS,
    jobs_days=20 * SECONDS,
    status_days=10 * SECONDS,
    alerts_days=10 * SECONDS,
    dedupe_days=60 * SECONDS,
)
QUICK = PurgeSettings(batch_size=3, duty=1.0, pause_seconds=0)  # several batches, no pauses


@pytest.fixture(name="sessions")
async def fixture_sessions(clean_database: str):
    engine = store.create_engine(clean_database)
    try:
        yield store.create_sessionmaker(engine)
    finally:
        await engine.dispose()


@pytest.fixture(name="ingest")
async def fixture_ingest(clean_database: str):
    engine = store.create_engine(clean_database)
    writer = IngestWriter(engine, rules=LINK_RULES)
    await writer.start()
    try:
        yield writer
    finally:
        await writer.close()
        await engine.dispose()


def delivery(*, job_id: str | None = None, visma_job_id: str | None = None, **fields: object):
    visma_job_id = visma_job_id or str(uuid.uuid4())
    body, headers = signed_delivery({"id": visma_job_id}, job_id=job_id)
    record = delivery_record(headers, body)
    for name, value in fields.items():
        setattr(record, name, value)
    return record


async def ids(sessions: async_sessionmaker[AsyncSession], column) -> set[str]:
    async with sessions.begin() as session:
        return set((await session.execute(select(column))).scalars())


async def counts_match_rows(sessions: async_sessionmaker[AsyncSession]) -> bool:
    async with sessions.begin() as session:
        await store.compact_job_counts(session)
        rows = Counter((await session.execute(select(store.Job.state))).scalars())
        kept = {
            state: await store.count_jobs_in(session, (state,))
            for state in ("submitted", "accepted", "succeeded", "failed", "expired", "rejected")
        }
    return {state: count for state, count in kept.items() if count} == dict(rows)


async def test_purge_removes_old_finished_jobs_and_deliveries_but_not_open_ones(
    sessions: async_sessionmaker[AsyncSession], ingest: IngestWriter
) -> None:
    now = datetime.now(UTC)
    old = now - timedelta(seconds=30)
    open_job = await insert_job(sessions, visma_job_id="v-open", submitted_at=old)
    finished = [
        await insert_job(
            sessions, state="succeeded", visma_job_id=f"v-{n}", submitted_at=old, finished_at=old
        )
        for n in range(5)
    ]
    young = await insert_job(sessions, state="failed", visma_job_id="v-young", finished_at=now)
    async with sessions.begin() as session:
        for job_id in finished:
            await store.add_event(session, job_id, kind="succeeded", source="poll", at=old)
    of_open = delivery(job_id=open_job, visma_job_id="v-open", received_at=old)
    of_finished = [
        delivery(job_id=job_id, visma_job_id=f"v-{n}", received_at=old)
        for n, job_id in enumerate(finished)
    ]
    stray = [delivery(received_at=old) for _ in range(4)]
    fresh = delivery()
    assert set(await ingest.store_many([of_open, *of_finished, *stray, fresh])) == {Stored.NEW}

    removed = await purge(sessions, RETENTION, QUICK, now=now)

    assert removed["deliveries"] == len(of_finished) + len(stray)
    assert removed["jobs"] == len(finished)
    assert await ids(sessions, store.Job.id) == {open_job, young}
    assert await ids(sessions, store.Delivery.id) == {of_open.id, fresh.id}
    assert await ids(sessions, store.JobEvent.job_id) == set()  # the timelines went too
    assert await counts_match_rows(sessions)
    # Nothing more to take: a second purge removes nothing.
    assert set((await purge(sessions, RETENTION, QUICK, now=now)).values()) == {0}


async def test_a_backlog_in_one_table_holds_up_none_of_the_others(
    sessions: async_sessionmaker[AsyncSession], ingest: IngestWriter
) -> None:
    now = datetime.now(UTC)
    old = now - timedelta(seconds=30)
    job = await insert_job(sessions, state="succeeded", finished_at=old)
    await ingest.store_many([delivery(received_at=old) for _ in range(6)])
    # Time for two batches: the inbox's first, then the jobs' turn (not the inbox's second).
    short = PurgeSettings(batch_size=2, duty=1.0, pause_seconds=0.4, max_seconds=0.6)

    first = await purge_for_a_while(sessions, RETENTION, short, now=now)

    assert (first.rows["deliveries"], first.rows["jobs"], first.done) == (2, 1, False)
    assert job not in await ids(sessions, store.Job.id)
    # The jobs are done with; the inbox and the tables not reached yet are left for the next.
    assert first.left == (
        "deliveries",
        "status history",
        "alerts",
        "purged notification ids",
        "idempotency keys",
        "dashboard sessions",
        "operations",
    )
    rest = await purge_for_a_while(sessions, RETENTION, QUICK, now=now, tables=first.left)
    assert (rest.rows["deliveries"], rest.rows["jobs"], rest.done) == (4, 0, True)


async def test_housekeeping_works_through_a_backlog_without_waiting_an_interval(
    sessions: async_sessionmaker[AsyncSession], ingest: IngestWriter
) -> None:
    old = datetime.now(UTC) - timedelta(seconds=30)
    await ingest.store_many([delivery(received_at=old) for _ in range(12)])
    # A pass has time for a batch or two of two, so the backlog takes several passes.
    passes = PurgeSettings(batch_size=2, duty=0.5, max_seconds=0.05)
    interval = 30.0
    worker = HousekeepingWorker(sessions, retention=RETENTION, every_seconds=interval, purge=passes)
    worker.start()
    try:
        # Waiting an interval after any pass would take `interval`: it must be done in half.
        deadline = asyncio.get_running_loop().time() + interval / 2
        while await ids(sessions, store.Delivery.id):
            assert asyncio.get_running_loop().time() < deadline, "the backlog waited an interval"
            await asyncio.sleep(0.05)
    finally:
        await worker.stop()


async def test_purge_takes_a_jobs_kept_result_and_callback_attempts_with_the_job(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    now = datetime.now(UTC)
    old = now - timedelta(seconds=30)
    gone = await insert_job(sessions, state="succeeded", submitted_at=old, finished_at=old)
    kept = await insert_job(sessions, state="succeeded", finished_at=now)
    async with sessions.begin() as session:
        for job_id in (gone, kept):
            await store.keep_result(
                session,
                job_id,
                status=201,
                headers={"Location": "/v1/customer/1"},
                content_type="application/json",
                content=b"{}",
                size=2,
                truncated=False,
                at=now,
            )
            await store.set_callback(session, job_id, "https://hooks.example/visma")
            delivery_row = store.AlertDelivery(
                job_id=job_id,
                channel="callback",
                target="https://hooks.example/visma",
                state="sent",
                attempts=1,
                body={"id": job_id},
            )
            session.add(delivery_row)
            await session.flush()
            await store.add_attempt(
                session, delivery_row.id, at=now, status_code=200, error=None, answer="ok"
            )

    removed = await purge(sessions, RETENTION, QUICK, now=now)

    assert removed["jobs"] == 1
    assert await ids(sessions, store.JobResult.job_id) == {kept}
    assert await ids(sessions, store.JobCallback.job_id) == {kept}
    assert await ids(sessions, store.AlertDelivery.job_id) == {kept}
    async with sessions.begin() as session:
        attempts = (await session.execute(select(func.count(store.AlertAttempt.id)))).scalar()
    assert attempts == 1


async def test_a_notification_purged_while_it_may_come_again_is_still_a_duplicate(
    sessions: async_sessionmaker[AsyncSession], ingest: IngestWriter
) -> None:
    now = datetime.now(UTC)
    first = delivery(received_at=now - timedelta(seconds=30))  # past retention, within dedupe
    assert await ingest.store(first) is True
    assert (await purge(sessions, RETENTION, QUICK, now=now))["deliveries"] == 1
    assert await ids(sessions, store.Delivery.id) == set()

    again = delivery(notification_id=first.notification_id)
    assert await ingest.store_many([again, delivery()]) == [Stored.DUPLICATE, Stored.NEW]

    # Once the dedupe window is over too, its id is let go: the dispatcher is long done with it.
    later = now + timedelta(seconds=61)
    assert (await purge(sessions, RETENTION, QUICK, now=later))["purged notification ids"] == 1
    assert await ingest.store(delivery(notification_id=first.notification_id)) is True


async def test_purge_dry_run_counts_and_removes_nothing(
    sessions: async_sessionmaker[AsyncSession], ingest: IngestWriter
) -> None:
    now = datetime.now(UTC)
    old = now - timedelta(seconds=30)
    await insert_job(sessions, state="expired", finished_at=old)
    await ingest.store_many([delivery(received_at=old) for _ in range(7)])

    counted = await purge(sessions, RETENTION, QUICK, now=now, dry_run=True)

    assert (counted["deliveries"], counted["jobs"]) == (7, 1)
    assert len(await ids(sessions, store.Delivery.id)) == 7
    assert len(await ids(sessions, store.Job.id)) == 1
    assert await purge(sessions, RETENTION, QUICK, now=now) == counted


async def test_purge_keeps_each_components_status_and_open_incidents(
    clean_database: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    token = "retention-token"
    async with in_process(clean_database, STATUS_WEBHOOK_TOKEN=token) as harness:
        for status in ("major_outage", "operational"):
            payload = {
                "component_update": {
                    "id": str(uuid.uuid4()),
                    "component_id": "c-1",
                    "old_status": "operational",
                    "new_status": status,
                    "created_at": datetime.now(UTC).isoformat(),
                },
                "component": {"id": "c-1", "name": "Visma.net ERP API", "status": status},
            }
            answer = await harness.client.post(f"/webhooks/status/{token}", json=payload)
            assert answer.status_code == 200
        for incident_id, status in (("i-open", "investigating"), ("i-done", "resolved")):
            payload = {
                "incident": {
                    "id": incident_id,
                    "name": incident_id,
                    "status": status,
                    "impact": "minor",
                    "created_at": datetime.now(UTC).isoformat(),
                    "updated_at": datetime.now(UTC).isoformat(),
                    "incident_updates": [],
                }
            }
            answer = await harness.client.post(f"/webhooks/status/{token}", json=payload)
            assert answer.status_code == 200
    later = datetime.now(UTC) + timedelta(seconds=11)

    removed = await purge(sessions, RETENTION, QUICK, now=later)

    assert removed["status history"] == 3  # two component updates, one resolved incident
    assert await ids(sessions, store.StatusComponentUpdate.id) == set()
    async with sessions.begin() as session:
        component = await store.get_component(session, "c-1")
    assert component is not None and component.status == "operational"
    assert await ids(sessions, store.StatusIncident.id) == {"i-open"}


async def test_purge_removes_alerts_that_are_done_with_and_keeps_pending_ones(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    now = datetime.now(UTC)
    old = now - timedelta(seconds=30)
    async with sessions.begin() as session:
        for alert_id, state in (("sent", "dispatched"), ("waiting", "pending")):
            await store.add_alert(
                session,
                store.Alert(
                    id=alert_id,
                    kind="job.failed",
                    subject=f"job:{alert_id}",
                    summary="x",
                    at=old,
                    raised_at=old,
                    body={},
                    state=state,
                    due_at=old,
                ),
            )
        await store.add_deliveries(session, "sent", [("webhook", "https://h/")], due=old)
    async with sessions.begin() as session:
        [row] = (await store.alert_deliveries(session, ["sent"]))["sent"]
        row.state = "sent"

    assert (await purge(sessions, RETENTION, QUICK, now=now))["alerts"] == 1
    assert await ids(sessions, store.Alert.id) == {"waiting"}
    assert await ids(sessions, store.AlertDelivery.id) == set()


async def test_purge_removes_ended_operations_as_old_as_the_jobs_and_keeps_running_ones(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    now = datetime.now(UTC)
    old, recent = now - timedelta(seconds=30), now - timedelta(seconds=5)
    async with sessions.begin() as session:
        for operation_id, state, finished in (
            ("old-done", "done", old),
            ("old-cancelled", "cancelled", old),
            ("recent-done", "done", recent),
            ("running", "running", None),
        ):
            await store.add_operation(
                session,
                store.Operation(
                    id=operation_id,
                    kind="resend",
                    state=state,
                    origin={"issueId": "i"},
                    total=1,
                    done=0,
                    failed=0,
                    created_at=old,
                    snapshot_at=old,
                    finished_at=finished,
                ),
            )
    assert (await purge(sessions, RETENTION, QUICK, now=now))["operations"] == 2
    assert await ids(sessions, store.Operation.id) == {"recent-done", "running"}


async def test_replicas_purging_at_once_remove_each_row_once(
    clean_database: str, sessions: async_sessionmaker[AsyncSession], ingest: IngestWriter
) -> None:
    now = datetime.now(UTC)
    await ingest.store_many([delivery(received_at=now - timedelta(seconds=30)) for _ in range(60)])
    engines = [store.create_engine(clean_database) for _ in range(3)]
    try:
        results = await asyncio.gather(
            *(
                purge(store.create_sessionmaker(engine), RETENTION, QUICK, now=now)
                for engine in engines
            )
        )
    finally:
        for engine in engines:
            await engine.dispose()
    assert sum(result["deliveries"] for result in results) == 60
    assert await ids(sessions, store.Delivery.id) == set()


async def test_sqlite_gives_the_space_of_purged_deliveries_back(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'space.db'}"
    await asyncio.to_thread(store.migrate, url)
    engine = store.create_engine(url)
    sessions = store.create_sessionmaker(engine)
    writer = IngestWriter(engine, rules=LINK_RULES)
    await writer.start()
    try:
        now = datetime.now(UTC)
        bulky = b'{"id": "x", "pad": "' + b"x" * 60_000 + b'"}'
        records = []
        for _ in range(200):
            body, headers = signed_delivery(bulky)
            record: DeliveryRecord = delivery_record(headers, body)
            record.received_at = now - timedelta(seconds=30)
            records.append(record)
        await writer.store_many(records)
        before = await _pages(sessions)

        await purge(sessions, RETENTION, QUICK, now=now)
        after = await _pages(sessions)
        async with sessions.begin() as session:
            left = (await session.execute(text("PRAGMA freelist_count"))).scalar_one()
    finally:
        await writer.close()
        await engine.dispose()
    # 200 bodies of 60 kB: some 3,000 pages of 4 kB, all handed back (the WAL holds them until
    # a checkpoint copies the smaller database into the file).
    assert before > 3000
    assert left == 0 and after < before / 4


async def _pages(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions.begin() as session:
        return int((await session.execute(text("PRAGMA page_count"))).scalar_one())


async def test_migrate_turns_on_incremental_vacuum_for_an_older_sqlite_file(
    tmp_path: Path,
) -> None:
    import sqlite3

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:  # a file made before: auto_vacuum off, a table in it
        conn.execute("CREATE TABLE leftover (x)")
    migration = await asyncio.to_thread(store.migrate, f"sqlite:///{path}")
    assert "rewritten once" in migration.summary()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # INCREMENTAL
    again = await asyncio.to_thread(store.migrate, f"sqlite:///{path}")
    assert not again.vacuumed


def test_purge_command_dry_run_prints_per_table_and_removes_nothing(
    clean_database: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def seed() -> None:
        engine = store.create_engine(clean_database)
        sessions = store.create_sessionmaker(engine)
        try:
            old = datetime.now(UTC) - timedelta(days=100)
            for _ in range(3):
                await insert_job(sessions, state="succeeded", finished_at=old, submitted_at=old)
        finally:
            await engine.dispose()

    asyncio.run(seed())
    monkeypatch.setenv("DATABASE_URL", clean_database)
    assert main(["purge", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would remove 3 jobs" in out and "would remove 0 deliveries" in out
    assert main(["purge", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "dryRun": False,
        "rows": {
            "deliveries": 0,
            "jobs": 3,
            "status history": 0,
            "alerts": 0,
            "purged notification ids": 0,
            "idempotency keys": 0,
            "dashboard sessions": 0,
            "operations": 0,
        },
    }


async def test_housekeeping_purges_on_its_own_and_readyz_shows_the_tables(
    clean_database: str,
) -> None:
    async with in_process(
        clean_database, RETENTION_DELIVERIES_DAYS=SECONDS, HOUSEKEEPING_INTERVAL_SECONDS=0.2
    ) as harness:
        body, headers = signed_delivery()
        assert (
            await harness.client.post("/webhooks/visma", content=body, headers=headers)
        ).is_success
        purged = 'visma_hooks_purged_rows_total{kind="deliveries"}'
        before = metric_value((await harness.client.get("/metrics")).text, purged) or 0
        harness.resources.housekeeping.start()
        deadline = asyncio.get_running_loop().time() + 10
        while True:  # until a pass has purged it (and counted it), and a measure after
            ready = (await harness.client.get("/readyz")).json()
            sizes = {item["table"]: item["rows"] for item in ready["tables"]["items"]}
            counted = metric_value((await harness.client.get("/metrics")).text, purged)
            if sizes.get("deliveries") == 0 and counted == before + 1:
                break
            assert asyncio.get_running_loop().time() < deadline, "housekeeping never purged it"
            await asyncio.sleep(0.1)
        assert await _count(harness.resources.sessions, store.Delivery) == 0
    tables = {item["table"]: item for item in ready["tables"]["items"]}
    assert tables["deliveries"]["rows"] == 0 and tables["deliveries"]["oldestAt"] is None
    assert tables["purged_notifications"]["rows"] == 1  # its id, for the dedupe window
    assert tables["purged_notifications"]["oldestAgeSeconds"] >= 0
    assert ready["tables"]["measuredAt"] is not None


async def _count(sessions: async_sessionmaker[AsyncSession], model) -> int:
    async with sessions.begin() as session:
        return int((await session.execute(select(func.count()).select_from(model))).scalar_one())
