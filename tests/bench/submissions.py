"""Safe submission's figures: a 1,000-job batch written and answered, and a repeated
Idempotency-Key's answer.

Both go through the app itself (httpx's ASGITransport: the handler, the queries and the JSON are
in it, the socket is not), with no worker running, so nothing is sent to Visma and each batch
measures what the caller waits for: every row written in one transaction, then the answer.
"""

from __future__ import annotations

import statistics
import time
import uuid
from dataclasses import dataclass

import httpx

from service.app import create_app, open_resources
from service.settings import Settings

BATCH_JOBS = 1000
BATCH_RUNS = 5
REPEAT_RUNS = 200


@dataclass
class SubmissionTiming:
    batch_median_ms: float
    batch_runs_ms: list[float]
    repeat_p50_ms: float
    repeat_p95_ms: float
    get_p50_ms: float
    """A plain `GET /api/v1/jobs/{id}` of the same job: the floor a repeat's answer stands on
    (it reads the key, then renders that same view)."""


def _batch(n: int, *, keyed: bool) -> dict[str, object]:
    run = uuid.uuid4().hex[:8]
    return {
        "jobs": [
            {
                "method": "POST",
                "path": "/v1/salesorder",
                "body": {"orderNumber": f"SO-{run}-{i}", "lines": [{"item": "A", "qty": i}]},
                "tags": {"night": run},
                **({"idempotencyKey": f"{run}-{i}"} if keyed else {}),
            }
            for i in range(n)
        ]
    }


async def time_submissions(settings: Settings) -> SubmissionTiming:
    """Median of BATCH_RUNS batches of BATCH_JOBS keyed jobs; p50/p95 of a repeated key."""
    async with open_resources(settings, run_workers=False) as resources:
        app = create_app(resources=resources)
        token = settings.api_tokens()[0]
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://bench",
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        ) as client:
            runs: list[float] = []
            for _ in range(BATCH_RUNS):
                body = _batch(BATCH_JOBS, keyed=True)
                started = time.perf_counter()
                answer = await client.post("/api/v1/jobs/batch", json=body)
                runs.append((time.perf_counter() - started) * 1000)
                answer.raise_for_status()
                statuses = {r["status"] for r in answer.json()["results"]}
                assert statuses == {201}, statuses
            # A repeat of a keyed job the last batch made: answered from the key, nothing sent.
            job = dict(body["jobs"][0])  # type: ignore[index]
            key = job.pop("idempotencyKey")
            repeats: list[float] = []
            for _ in range(REPEAT_RUNS):
                started = time.perf_counter()
                again = await client.post(
                    "/api/v1/jobs", json=job, headers={"Idempotency-Key": key}
                )
                repeats.append((time.perf_counter() - started) * 1000)
                assert again.status_code == 200, again.text
            gets: list[float] = []
            for _ in range(REPEAT_RUNS):
                started = time.perf_counter()
                got = await client.get(f"/api/v1/jobs/{again.json()['id']}")
                gets.append((time.perf_counter() - started) * 1000)
                got.raise_for_status()
    repeats.sort()
    return SubmissionTiming(
        batch_median_ms=statistics.median(runs),
        batch_runs_ms=runs,
        repeat_p50_ms=statistics.median(repeats),
        repeat_p95_ms=repeats[int(len(repeats) * 0.95) - 1],
        get_p50_ms=statistics.median(gets),
    )
