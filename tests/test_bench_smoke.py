"""The benchmark harness end to end on a small load: the real server, counted like `make bench`.

It uses the harness's own httpx load instead of wrk, so it needs no outside tool.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from service.settings import Settings
from tests.bench import databases, events, outcomes, procs, queries, run
from tests.bench.loadgen import (
    LoadResult,
    check_counts,
    make_deliveries,
    new_prefix,
    run_python_load,
)
from tests.otlp_receiver import receiver_thread

pytestmark = pytest.mark.e2e

SECRET = "smoke-webhook-secret"


def test_bench_harness_every_2xx_is_stored(clean_database: str) -> None:
    # Synchronous like the harness itself, which runs its own event loops.
    job_ids = [str(uuid.uuid4()) for _ in range(20)]
    databases.seed_jobs(clean_database, job_ids, state="succeeded")
    # Half name a job (the whole correlation path), half name none.
    deliveries = make_deliveries(SECRET, job_ids, 40) + make_deliveries(SECRET, [], 40)
    env = {"VISMA_WEBHOOK_SECRETS": SECRET, "API_TOKENS": "smoke-token"}
    with procs.service(clean_database, workers=1, env=env) as server:
        prefix = new_prefix("smoke")
        load = asyncio.run(
            run_python_load(
                server.url, deliveries=deliveries, prefix=prefix, total=400, connections=16
            )
        )
        rss = server.peak_rss_mb()
    stored = databases.count_deliveries(clean_database, prefix)
    assert load.responses == load.ok == 400, server.log_tail()
    assert stored == load.ok  # nothing in flight at the end: every answer was counted
    # The half that names a job (its own Visma job id in the body) is linked to it.
    assert databases.count_deliveries(clean_database, prefix, linked=True) == stored // 2
    assert check_counts(load, stored) == []
    assert check_counts(load, stored - 1) == ["1 deliveries were acknowledged (2xx) but not stored"]
    assert load.p50_ms > 0 and rss > 0


def test_bench_traced_load_exports_a_span_per_delivery(clean_database: str) -> None:
    # `--traced`: the main load with tracing on, its spans sent over OTLP to a loopback receiver.
    assert run._parser().parse_args(["--traced"]).traced
    job_ids = [str(uuid.uuid4()) for _ in range(10)]
    databases.seed_jobs(clean_database, job_ids, state="succeeded")
    deliveries = make_deliveries(SECRET, job_ids, 20)
    with receiver_thread() as receiver:
        env = {
            "VISMA_WEBHOOK_SECRETS": SECRET,
            "API_TOKENS": "smoke-token",
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        }
        with procs.service(clean_database, workers=1, env=env) as server:
            prefix = new_prefix("traced")
            load = asyncio.run(
                run_python_load(
                    server.url, deliveries=deliveries, prefix=prefix, total=200, connections=8
                )
            )
            deadline = time.monotonic() + 15
            while receiver.received < 200 and time.monotonic() < deadline:
                time.sleep(0.05)
    assert load.ok == 200, server.log_tail()
    assert databases.count_deliveries(clean_database, prefix) == 200
    assert receiver.received >= 200  # one server span per delivery (and the passes' own)


def test_bench_reports_the_traced_ratio_beside_the_untraced_one() -> None:
    def load(responses: int) -> LoadResult:
        return LoadResult("wrk", 64, 10.0, responses, responses, 0, 0, 1.0, 2.0, 3.0)

    plain = run.Row("service sqlite", "sqlite", 1, load(50_000), stored=50_000)
    traced = run.Row("service sqlite, traced", "sqlite", 1, load(40_000), stored=40_000)
    traced.traced, traced.spans = True, 39_000
    plain.bare_rps = traced.bare_rps = 10_000.0
    assert run._traced_lines([plain, traced]) == [
        "  sqlite: traced 0.40 of bare, untraced 0.50 (0.80 of untraced; 39,000 spans exported)"
    ]
    texts = [text for _ok, text in run._ingest_verdicts([plain, traced])]
    assert not any(t.startswith("service sqlite, traced: 0.40") for t in texts)  # not a target


def test_bench_routed_events_every_acknowledged_delivery_is_forwarded(
    clean_database: str,
) -> None:
    deliveries = events.make_event_deliveries(SECRET, 40)
    env = {"VISMA_WEBHOOK_SECRETS": SECRET, "API_TOKENS": "smoke-token"}
    with events.sink() as target:
        env.update(events.routes_env(target.url))
        with procs.service(clean_database, workers=1, env=env) as server:
            prefix = new_prefix("smoke-routed")
            load = asyncio.run(
                run_python_load(
                    server.url,
                    deliveries=deliveries,
                    prefix=prefix,
                    total=200,
                    connections=16,
                    event_id=events.ROUTED_EVENT,
                )
            )
            stored = databases.count_deliveries(clean_database, prefix)
            forwarded = events.wait_forwarded(target.url, prefix, stored, timeout=60)
            log = server.log_tail()
    assert load.responses == load.ok == 200, log
    assert stored == load.ok
    assert forwarded.received == stored, log
    assert check_counts(load, stored) == []


def test_bench_times_the_issue_list_beside_the_jobs(clean_database: str) -> None:
    # The 1,000,000-job part on 600 jobs: a hundredth as many issues, each failed, expired or
    # rejected job dealt to one, so the issue whose page is timed has jobs.
    assert run._parser().parse_args([]).outcomes
    queries.seed_million(clean_database, 600)
    assert databases.fetch_value(clean_database, "SELECT count(*) FROM issues") == 6
    counted = "SELECT sum(job_count) FROM issues"
    failing = "SELECT count(*) FROM jobs WHERE state IN ('failed', 'expired', 'rejected')"
    assert databases.fetch_value(clean_database, counted) == 25  # 25 of every 1000 jobs
    assert databases.fetch_value(clean_database, failing) == 25
    settings = Settings(_env_file=None, DATABASE_URL=clean_database, API_TOKENS="smoke-token")  # type: ignore[call-arg]
    timings = {t.what: t for t in asyncio.run(queries.time_queries(settings, runs=3))}
    assert timings["GET /api/v1/issues first page of 50"].detail == "6 issues"
    assert timings["GET /api/v1/issues state=open, page 1 of 50"].detail == "3 issues"
    assert timings["GET /api/v1/issues/{id} with its jobs, page 1 of 50"].detail == "5 jobs"
    texts = [text for _ok, text in run._query_verdicts({"sqlite": list(timings.values())})]
    assert any(t.startswith("sqlite: GET /api/v1/issues/{id}") and "(< 20)" in t for t in texts)


def test_bench_times_recording_a_failure_beside_a_success(clean_database: str) -> None:
    settings = Settings(_env_file=None, DATABASE_URL=clean_database, API_TOKENS="smoke-token")  # type: ignore[call-arg]
    timing = asyncio.run(outcomes.time_outcomes(settings, runs=5))
    assert timing.succeeded_ms > 0 and timing.failed_ms > 0 and timing.failed_without_issue_ms > 0
    # Every run was rolled back: only the one committed failure is counted on the issue.
    assert databases.fetch_value(clean_database, "SELECT sum(job_count) FROM issues") == 1
    (ok, text), *_ = run._outcome_verdicts({"postgresql": timing})
    assert text.startswith("postgresql: a failure recorded with its issue")
    assert ok == (timing.issue_cost <= run.MAX_ISSUE_COST)
