"""Job counts per state, kept by database triggers: the job list's `totalCount` when it is
filtered by state alone (or not at all) comes from them, and must match a real count."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, func, insert, select, text, update

from service import store
from service.store import is_sqlite
from tests.factories import insert_job, job_values
from tests.harness import Harness, in_process

STATES = ("submitted", "accepted", "succeeded", "failed", "expired", "rejected")


@pytest.fixture(name="harness")
async def fixture_harness(clean_database: str):
    async with in_process(clean_database) as harness:
        yield harness


def job_row(state: str, n: int) -> dict[str, object]:
    at = datetime(2026, 11, 1, tzinfo=UTC) + timedelta(seconds=n)
    return job_values(state=state, submitted_at=at, last_modified_at=at, check_attempts=0)


async def exact_count(harness: Harness, states: tuple[str, ...] = ()) -> int:
    query = select(func.count()).select_from(store.Job)
    if states:
        query = query.where(store.Job.state.in_(states))
    async with harness.resources.sessions.begin() as session:
        return int((await session.execute(query)).scalar_one())


async def listed_total(harness: Harness, query: str) -> int:
    response = await harness.client.get(f"/api/v1/jobs{query}")
    assert response.status_code == 200, response.text
    return int(response.json()["metadata"]["totalCount"])


async def assert_totals_match(harness: Harness) -> None:
    assert await listed_total(harness, "") == await exact_count(harness)
    for state in STATES:
        assert await listed_total(harness, f"?state={state}") == await exact_count(
            harness, (state,)
        ), state
    both = await listed_total(harness, "?state=accepted,failed")
    assert both == await exact_count(harness, ("accepted", "failed"))


async def test_totals_follow_inserts_transitions_and_deletes(harness: Harness) -> None:
    sessions = harness.resources.sessions
    # One at a time through the ORM, as the service submits ...
    ids = [await insert_job(sessions, state="submitted") for _ in range(5)]
    # ... and many in one statement, as a bulk load would.
    async with sessions.begin() as session:
        await session.execute(insert(store.Job), [job_row(STATES[n % 6], n) for n in range(60)])
    await assert_totals_match(harness)

    async with sessions.begin() as session:
        await session.execute(
            update(store.Job).where(store.Job.id.in_(ids[:3])).values(state="accepted")
        )
        # A change of other columns only (as the webhook hot path makes) counts nothing.
        await session.execute(update(store.Job).values(last_modified_at=datetime.now(UTC)))
        await session.execute(
            update(store.Job).where(store.Job.id == ids[0]).values(state="failed")
        )
        await session.execute(delete(store.Job).where(store.Job.id == ids[4]))
    await assert_totals_match(harness)
    assert await listed_total(harness, "?state=submitted") == 10 + 1  # bulk, and 5 - 3 - 1


async def test_folding_the_counts_keeps_every_total(harness: Harness) -> None:
    sessions = harness.resources.sessions
    async with sessions.begin() as session:
        await session.execute(insert(store.Job), [job_row(STATES[n % 3], n) for n in range(30)])
    for n in range(6):
        job_id = await insert_job(sessions, state="accepted")
        async with sessions.begin() as session:
            await session.execute(
                update(store.Job).where(store.Job.id == job_id).values(state=STATES[n % 6])
            )
    async with sessions.begin() as session:
        folded = await store.compact_job_counts(session)
    assert folded > len(STATES)  # there was something to fold
    async with sessions.begin() as session:
        rows = (await session.execute(select(store.JobStateCount))).scalars().all()
    assert len(rows) == len({r.state for r in rows}) <= len(STATES)  # one row per state
    await assert_totals_match(harness)


async def test_the_count_triggers_are_in_place(harness: Harness) -> None:
    # On SQLite a later migration that rebuilds `jobs` (batch mode) would drop its triggers
    # without a word, and the counts would drift from then on: this test would say so.
    if is_sqlite(str(harness.resources.engine.url)):
        query = "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'jobs'"
    else:
        query = (
            "SELECT tgname FROM pg_trigger WHERE tgrelid = 'jobs'::regclass AND NOT tgisinternal"
        )
    async with harness.resources.sessions.begin() as session:
        names = set((await session.execute(text(query))).scalars())
    assert names == {"jobs_count_inserted", "jobs_count_state_changed", "jobs_count_deleted"}


async def test_a_list_filtered_beyond_state_still_counts_its_rows(harness: Harness) -> None:
    sessions = harness.resources.sessions
    for n in range(4):
        await insert_job(sessions, state="failed", tags={"team": "a" if n % 2 else "b"})
    assert await listed_total(harness, "?state=failed&tag.team=a") == 2
    assert await listed_total(harness, "?state=failed") == 4
