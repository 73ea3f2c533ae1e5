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

# The failed, expired and rejected jobs (25 per 1000) are dealt out over the $M issues in
# turn, so each issue has jobs (2-3 of them with 1,000,000 jobs and 10,000 issues).
_ISSUE_OF_JOB = """CASE WHEN i % 1000 >= 5 AND i % 1000 < 30
    THEN 'issue-' || (((i / 1000) * 25 + i % 1000 - 5) % $M + 1) END"""

SEED_POSTGRES = f"""
INSERT INTO jobs (id, visma_job_id, state, method, path, tags, notify, submitted_at,
                  last_modified_at, next_check_at, check_attempts, issue_id)
SELECT md5('job' || i), md5('visma' || i), s.state, 'POST', '/v1/customer',
       json_build_object('team', 't' || (i % 20)), true, s.at,
       s.at + CASE WHEN s.state = 'accepted' THEN interval '0' ELSE interval '2 minutes' END,
       CASE WHEN s.state = 'accepted'
            THEN now() - interval '1 hour' + (i % 180) * interval '1 minute' END, 0,
       {_ISSUE_OF_JOB}
FROM (SELECT i, {_STATE} AS state, now() - i * interval '2592 milliseconds' AS at
      FROM generate_series(1, $N) AS i) AS s
"""

SEED_SQLITE = f"""
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $N)
INSERT INTO jobs (id, visma_job_id, state, method, path, tags, notify, submitted_at,
                  last_modified_at, next_check_at, check_attempts, issue_id)
SELECT lower(hex(randomblob(16))), lower(hex(randomblob(16))), state, 'POST', '/v1/customer',
       json_object('team', 't' || (i % 20)), 1,
       strftime('%Y-%m-%d %H:%M:%f000', at),
       strftime('%Y-%m-%d %H:%M:%f000', at,
                CASE WHEN state = 'accepted' THEN '+0 seconds' ELSE '+120 seconds' END),
       CASE WHEN state = 'accepted'
            THEN strftime('%Y-%m-%d %H:%M:%f000', 'now', '-1 hour',
                          '+' || (i % 180) || ' minutes') END, 0,
       {_ISSUE_OF_JOB}
FROM (SELECT i, {_STATE} AS state,
             julianday('now') - i * 2.592 / 86400.0 AS at FROM n)
"""


# Issue k: company k % 20; per 10: 4 open, 2 acknowledged, 3 resolved, 1 ignored; kinds and
# faults in turn; last seen spread evenly over the last 30 days (k = 1 the most recent).
_ISSUE_STATE = """CASE WHEN k % 10 < 4 THEN 'open' WHEN k % 10 < 6 THEN 'acknowledged'
    WHEN k % 10 < 9 THEN 'resolved' ELSE 'ignored' END"""
_ISSUE_KIND = (
    """CASE WHEN k % 5 < 3 THEN 'failed' WHEN k % 5 < 4 THEN 'expired' ELSE 'rejected' END"""
)

SEED_ISSUES_POSTGRES = f"""
INSERT INTO issues (id, cause_key, tenant, kind, state, fault_code, http_status, expiry_reason,
                    method, path_template, message, hint, first_seen_at, last_seen_at,
                    job_count, first_job_id, opened_by_job_id, state_changed_at)
SELECT 'issue-' || k, md5('cause' || k) || md5('key' || k), 'company-' || (k % 20), s.kind,
       s.state, CASE WHEN s.kind = 'failed' THEN (10000 + k % 50)::text END,
       CASE WHEN s.kind = 'rejected' THEN 400 END,
       CASE WHEN s.kind = 'expired' THEN 'no-state' END,
       'POST', '/v1/customer/{{id}}', 'Error ' || k, 'Check the setup of company ' || (k % 20),
       s.at - interval '1 day', s.at, 0, NULL, NULL, s.at
FROM (SELECT k, {_ISSUE_STATE} AS state, {_ISSUE_KIND} AS kind,
             now() - (k::float8 / $M) * interval '30 days' AS at
      FROM generate_series(1, $M) AS k) AS s
"""

SEED_ISSUES_SQLITE = f"""
WITH RECURSIVE n(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM n WHERE k < $M)
INSERT INTO issues (id, cause_key, tenant, kind, state, fault_code, http_status, expiry_reason,
                    method, path_template, message, hint, first_seen_at, last_seen_at,
                    job_count, first_job_id, opened_by_job_id, state_changed_at)
SELECT 'issue-' || k, lower(hex(randomblob(32))), 'company-' || (k % 20), kind, state,
       CASE WHEN kind = 'failed' THEN CAST(10000 + k % 50 AS TEXT) END,
       CASE WHEN kind = 'rejected' THEN 400 END,
       CASE WHEN kind = 'expired' THEN 'no-state' END,
       'POST', '/v1/customer/{{id}}', 'Error ' || k, 'Check the setup of company ' || (k % 20),
       strftime('%Y-%m-%d %H:%M:%f000', at - 1), strftime('%Y-%m-%d %H:%M:%f000', at), 0,
       NULL, NULL, strftime('%Y-%m-%d %H:%M:%f000', at)
FROM (SELECT k, {_ISSUE_STATE} AS state, {_ISSUE_KIND} AS kind,
             julianday('now') - k * 30.0 / $M AS at FROM n)
"""

# Each issue's count and first job from the jobs dealt to it (one index range per issue).
COUNT_ISSUE_JOBS = """
UPDATE issues SET
    job_count = (SELECT count(*) FROM jobs WHERE jobs.issue_id = issues.id),
    first_job_id = (SELECT j.id FROM jobs AS j WHERE j.issue_id = issues.id
                    ORDER BY j.submitted_at LIMIT 1)
"""

ISSUE_TENANT = "company-7"
"""The company the issue list's tenant filter names."""


def issue_count(jobs: int) -> int:
    """Issues seeded beside `jobs` jobs: 10,000 with 1,000,000, as many per job when fewer."""
    return max(1, jobs // 100)


DUE_WORK_QUERY = "due-work query (claim_due_jobs: claim + lease, one statement)"
"""The timing the due-work target applies to."""


@dataclass(frozen=True)
class Timing:
    what: str
    median_ms: float
    p95_ms: float
    detail: str = ""


def seed_million(url: str, count: int = 1_000_000) -> float:
    """Fill `jobs` with `count` jobs and `issues` with `issue_count(count)` issues, the failed,
    expired and rejected jobs dealt out over them; returns the seconds it took."""
    started = time.perf_counter()
    sqlite = is_sqlite(url)
    jobs = SEED_SQLITE if sqlite else SEED_POSTGRES
    issues = SEED_ISSUES_SQLITE if sqlite else SEED_ISSUES_POSTGRES
    sizes = {"$N": str(int(count)), "$M": str(issue_count(count))}
    statements = [jobs, issues]
    for i, statement in enumerate(statements):
        for name, value in sizes.items():
            statement = statement.replace(name, value)
        statements[i] = statement
    databases.execute(url, *statements)
    databases.execute(url, "ANALYZE jobs", COUNT_ISSUE_JOBS)  # the count by index, per issue
    databases.vacuum(url)
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
            timings += await _time_issues(client, runs)

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


ISSUE_LISTS: list[tuple[str, dict[str, str]]] = [
    ("first page of 50", {"pageSize": "50"}),
    ("state=open, page 1 of 50", {"state": "open", "pageSize": "50"}),
    (f"tenant={ISSUE_TENANT}, page 1 of 50", {"tenant": ISSUE_TENANT, "pageSize": "50"}),
]
"""The issue list's timed filters (their target is the job list's: < 20 ms)."""


async def _time_issues(client: httpx.AsyncClient, runs: int) -> list[Timing]:
    """The issues list, filtered as ISSUE_LISTS, and one issue with its first page of jobs."""
    timings: list[Timing] = []
    for label, params in ISSUE_LISTS:
        total = 0

        async def list_once(params: dict[str, str] = params) -> None:
            nonlocal total
            response = await client.get("/api/v1/issues", params=params)
            response.raise_for_status()
            total = response.json()["metadata"]["totalCount"]

        median, p95 = await _time(list_once, runs)
        timings.append(Timing(f"GET /api/v1/issues {label}", median, p95, f"{total} issues"))
    jobs = 0

    async def issue_once() -> None:
        # issue-1 is the most recently seen; the seed deals it jobs whenever there are any.
        nonlocal jobs
        response = await client.get("/api/v1/issues/issue-1", params={"pageSize": "50"})
        response.raise_for_status()
        jobs = response.json()["jobs"]["metadata"]["totalCount"]

    median, p95 = await _time(issue_once, runs)
    timings.append(
        Timing("GET /api/v1/issues/{id} with its jobs, page 1 of 50", median, p95, f"{jobs} jobs")
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
