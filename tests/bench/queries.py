"""Query timings with 1,000,000 jobs: the filtered, paged job list and the poller's due work.

The list is timed through the app itself (`GET /api/v1/jobs` over httpx's ASGITransport, so the
handler, the queries and the JSON are all in it, the socket is not); the due-work query through
`store.claim_due_jobs` (one statement: claim and lease), alone inside a transaction and undone by
a savepoint, and in a rolled-back transaction of its own, so every run finds the same work.
No worker runs meanwhile, so nothing else touches the table.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession

from service import store
from service.app import create_app, open_resources
from service.settings import Settings
from service.store import is_sqlite
from service.workers import HousekeepingWorker
from tests.bench import databases

# i = 1 is the newest job; jobs are spread evenly over the last 30 days. Per 1000 jobs: 5
# accepted (open, a third of them due), 15 failed, 5 expired, 5 rejected, the rest succeeded.
_STATE = """CASE WHEN i % 1000 < 5 THEN 'accepted' WHEN i % 1000 < 20 THEN 'failed'
    WHEN i % 1000 < 25 THEN 'expired' WHEN i % 1000 < 30 THEN 'rejected' ELSE 'succeeded' END"""

SEED_POSTGRES = f"""
INSERT INTO jobs (id, visma_job_id, state, method, path, tags, notify, submitted_at,
                  last_modified_at, next_check_at, check_attempts)
SELECT md5('job' || i), md5('visma' || i), s.state, 'POST', '/v1/customer',
       json_build_object('team', 't' || (i % 20)), true, s.at,
       s.at + CASE WHEN s.state = 'accepted' THEN interval '0' ELSE interval '2 minutes' END,
       CASE WHEN s.state = 'accepted'
            THEN now() - interval '1 hour' + (i % 180) * interval '1 minute' END, 0
FROM (SELECT i, {_STATE} AS state, now() - i * interval '2592 milliseconds' AS at
      FROM generate_series(1, $N) AS i) AS s
"""

SEED_SQLITE = f"""
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $N)
INSERT INTO jobs (id, visma_job_id, state, method, path, tags, notify, submitted_at,
                  last_modified_at, next_check_at, check_attempts)
SELECT lower(hex(randomblob(16))), lower(hex(randomblob(16))), state, 'POST', '/v1/customer',
       json_object('team', 't' || (i % 20)), 1,
       strftime('%Y-%m-%d %H:%M:%f000', at),
       strftime('%Y-%m-%d %H:%M:%f000', at,
                CASE WHEN state = 'accepted' THEN '+0 seconds' ELSE '+120 seconds' END),
       CASE WHEN state = 'accepted'
            THEN strftime('%Y-%m-%d %H:%M:%f000', 'now', '-1 hour',
                          '+' || (i % 180) || ' minutes') END, 0
FROM (SELECT i, {_STATE} AS state,
             julianday('now') - i * 2.592 / 86400.0 AS at FROM n)
"""


DUE_WORK_QUERY = "due-work query (claim_due_jobs: claim + lease, one statement)"
"""The timing the due-work target applies to."""


@dataclass(frozen=True)
class Timing:
    what: str
    median_ms: float
    p95_ms: float
    detail: str = ""


def seed_million(url: str, count: int = 1_000_000) -> float:
    """Fill `jobs` with `count` jobs in one statement; returns the seconds it took."""
    started = time.perf_counter()
    seed = SEED_SQLITE if is_sqlite(url) else SEED_POSTGRES
    databases.execute(url, seed.replace("$N", str(int(count))))
    databases.vacuum(url)
    return time.perf_counter() - started


def list_filters(now: datetime) -> list[tuple[str, dict[str, str]]]:
    week_ago = (now - timedelta(days=7)).isoformat()
    hour_ago = (now - timedelta(hours=1)).isoformat()
    return [
        (
            "state=failed, created in the last 7 days, page 2 of 50",
            {
                "state": "failed",
                "createdDateTime": week_ago,
                "createdDateTimeCondition": ">=",
                "pageSize": "50",
                "pageNumber": "2",
            },
        ),
        ("state=accepted (open jobs), page 1 of 50", {"state": "accepted", "pageSize": "50"}),
        (
            "modified in the last hour, page 1 of 50",
            {
                "lastModifiedDateTime": hour_ago,
                "lastModifiedDateTimeCondition": ">=",
                "pageSize": "50",
            },
        ),
        (
            "state=failed, tag.team=t7, page 1 of 50",
            {"state": "failed", "tag.team": "t7", "pageSize": "50"},
        ),
        (
            "state=succeeded (97% of rows), page 3 of 50",
            {"state": "succeeded", "pageSize": "50", "pageNumber": "3"},
        ),
        ("no filter, page 1 of 50", {"pageSize": "50"}),
    ]


async def time_queries(settings: Settings, *, runs: int = 30) -> list[Timing]:
    """Time each list filter and the due-work claim against `settings.DATABASE_URL`."""
    timings: list[Timing] = []
    async with open_resources(settings, run_workers=False) as resources:
        # What the service's housekeeping does within a minute of the seed: fold the job
        # counts its triggers wrote (on SQLite one row per seeded job).
        await HousekeepingWorker(resources.sessions).run_once()
        app = create_app(resources=resources)
        token = settings.api_tokens()[0]
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://bench",
            headers={"Authorization": f"Bearer {token}"},
        ) as client:
            for label, params in list_filters(datetime.now(UTC)):
                total = 0

                async def list_once(params: dict[str, str] = params) -> None:
                    nonlocal total
                    response = await client.get("/api/v1/jobs", params=params)
                    response.raise_for_status()
                    total = response.json()["metadata"]["totalCount"]

                median, p95 = await _time(list_once, runs)
                timings.append(Timing(f"GET /api/v1/jobs {label}", median, p95, f"{total} rows"))

        claimed = 0

        async def claim_in_transaction() -> None:
            # What the resolver pays per round: a pooled connection (PostgreSQL pings it),
            # BEGIN, the claim, and here ROLLBACK, so every run finds the same due work.
            nonlocal claimed
            async with resources.engine.connect() as conn:
                transaction = await conn.begin()
                session = AsyncSession(bind=conn)
                now = datetime.now(UTC)
                jobs = await store.claim_due_jobs(
                    session, now=now, lease_until=now + timedelta(minutes=2), limit=20
                )
                claimed = len(jobs)
                await transaction.rollback()
                await session.close()

        async with resources.engine.connect() as conn:
            await conn.begin()
            session = AsyncSession(bind=conn)

            async def due_work_query() -> None:
                # The due-work query alone, as the target names it: one statement, inside
                # an open transaction, undone by a savepoint outside the timed call.
                now = datetime.now(UTC)
                await conn.exec_driver_sql("SAVEPOINT due_work")
                started = time.perf_counter()
                await store.claim_due_jobs(
                    session, now=now, lease_until=now + timedelta(minutes=2), limit=20
                )
                elapsed.append(time.perf_counter() - started)
                await conn.exec_driver_sql("ROLLBACK TO SAVEPOINT due_work")

            elapsed: list[float] = []
            await _time(due_work_query, runs)
            await session.close()
        query_ms = sorted(e * 1000 for e in elapsed[3:])  # _time's three warm-up calls left out
        timings.append(
            Timing(
                DUE_WORK_QUERY,
                statistics.median(query_ms),
                query_ms[int(len(query_ms) * 0.95) - 1],
                "20 jobs claimed and leased, one statement",
            )
        )
        median, p95 = await _time(claim_in_transaction, runs)
        timings.append(
            Timing(
                "claim_due_jobs in a transaction of its own (checkout, BEGIN, claim, ROLLBACK)",
                median,
                p95,
                f"{claimed} claimed",
            )
        )
    return timings


async def explain_due_work(settings: Settings) -> str:
    """The plan of the due-work query exactly as `claim_due_jobs` sends it (SQL caught on its
    way to the driver, then explained with the same parameters, in a rolled-back transaction:
    on PostgreSQL EXPLAIN ANALYZE runs the claim, which the rollback undoes)."""
    engine = store.create_engine(settings.DATABASE_URL)
    caught: list[tuple[str, Any]] = []

    def catch(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE") and not caught:
            caught.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", catch)
    try:
        async with engine.connect() as conn:
            transaction = await conn.begin()
            now = datetime.now(UTC)
            await store.claim_due_jobs(AsyncSession(bind=conn), now=now, lease_until=now, limit=20)
            await transaction.rollback()
        event.remove(engine.sync_engine, "before_cursor_execute", catch)
        statement, parameters = caught[0]
        explain = (
            "EXPLAIN QUERY PLAN "
            if is_sqlite(settings.DATABASE_URL)
            else "EXPLAIN (ANALYZE, COSTS OFF) "
        )
        async with engine.connect() as conn:
            transaction = await conn.begin()
            rows = (await conn.exec_driver_sql(explain + statement, parameters)).all()
            await transaction.rollback()
    finally:
        await engine.dispose()
    plan = "\n".join(str(row[-1]) for row in rows)
    return f"{' '.join(statement.split())}\n{plan}"


async def _time(call: Callable[[], Awaitable[None]], runs: int) -> tuple[float, float]:
    for _ in range(3):  # warm caches and prepared statements
        await call()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1]
