"""The benchmark harness end to end on a small load: the real server, counted like `make bench`.

It uses the harness's own httpx load instead of wrk, so it needs no outside tool.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest

from tests.bench import databases, events, procs
from tests.bench.loadgen import check_counts, make_deliveries, new_prefix, run_python_load

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
