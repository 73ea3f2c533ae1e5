"""Polling fallback, expiry and pacing, end to end against the simulator."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from service import store
from service.simulator import Outcome
from service.store import create_engine, create_sessionmaker
from tests.harness import signed_delivery
from tests.stack import Stack, next_check_of, running_stack

pytestmark = pytest.mark.e2e


async def test_dropped_webhook_resolves_by_polling(clean_database: str) -> None:
    async with running_stack(clean_database, POLL_AFTER_SECONDS=0.3) as stack:
        stack.simulator.script(Outcome(kind="no_license", webhook="drop"))
        submitted = await stack.submit(body={"n": 1})
        job = await stack.wait_for_end(submitted["id"])
        assert job["state"] == "failed"
        assert job["resolvedBy"] == "poll"
        assert job["error"]["faultCode"] == "12027"
        assert "webhook" not in [e["kind"] for e in job["events"]]


async def test_webhook_after_a_poll_changes_only_the_timeline(clean_database: str) -> None:
    async with running_stack(clean_database, POLL_AFTER_SECONDS=0.3) as stack:
        stack.simulator.script(Outcome(kind="success", webhook="drop"))
        submitted = await stack.submit(body={"n": 1})
        before = await stack.wait_for_end(submitted["id"])
        assert before["resolvedBy"] == "poll"
        body, headers = signed_delivery({"id": before["vismaJobId"]}, job_id=before["id"])
        late = await stack.api.post("/webhooks/visma", content=body, headers=headers)
        assert late.json()["status"] == "stored"
        # Committed before the 200: the finished job has no read due, so none can follow.
        assert await next_check_of(clean_database, before["id"]) is None
        after = await stack.job(before["id"])
        assert after["events"][-1]["kind"] == "webhook"
        unchanged = {k: v for k, v in after.items() if k not in ("events", "lastModifiedAt")}
        assert unchanged == {
            k: v for k, v in before.items() if k not in ("events", "lastModifiedAt")
        }
        reads = [r for r in stack.simulator.requests if r.path.endswith(before["vismaJobId"])]
        assert len(reads) == 1  # the late webhook caused no second state read


async def test_job_visma_forgot_expires_after_the_ttl(clean_database: str) -> None:
    async with running_stack(clean_database, POLL_AFTER_SECONDS=0.2, JOB_TTL_SECONDS=1.5) as stack:
        stack.simulator.script(Outcome(kind="success", webhook="drop", duration_seconds=60))
        submitted = await stack.submit(body={"n": 1})
        del stack.simulator.jobs[submitted["vismaJobId"]]  # Visma forgets it: state reads 404
        job = await stack.wait_for_end(submitted["id"])
        assert job["state"] == "expired"
        kinds = [e["kind"] for e in job["events"]]
        # The 404 for a young job was retried, not taken as final.
        failed_reads = [e for e in job["events"] if e["kind"] == "state_read_failed"]
        assert failed_reads and all(e["detail"]["notFound"] for e in failed_reads)
        assert kinds[-1] == "expired"
        assert "no longer knows" in job["events"][-1]["detail"]["note"]
        assert job["error"] is None and job["resolvedBy"] is None
        expired_at = datetime.fromisoformat(job["finishedAt"])
        submitted_at = datetime.fromisoformat(job["submittedAt"])
        assert expired_at - submitted_at >= timedelta(seconds=1.5)


async def test_running_job_is_polled_again_with_growing_intervals(clean_database: str) -> None:
    async with running_stack(clean_database, POLL_AFTER_SECONDS=0.2) as stack:
        stack.simulator.script(Outcome(kind="success", webhook="drop", duration_seconds=60))
        submitted = await stack.submit(body={"n": 1})
        job = await stack.wait_for_event(submitted["id"], "state_read")
        assert job["state"] == "accepted"
        reads = [e for e in job["events"] if e["kind"] == "state_read"]
        assert len(reads) == 1 and reads[0]["detail"]["status"] == "Started"
        engine = create_engine(clean_database)
        async with create_sessionmaker(engine).begin() as session:
            row = await store.get_job(session, submitted["id"])
        await engine.dispose()
        assert row is not None and row.next_check_at is not None
        assert row.next_check_at - datetime.now(UTC) > timedelta(seconds=3)  # not hammering


async def _visma_jobs(stack: Stack, count: int) -> list[str]:
    """Background jobs created straight in the simulator (no webhook), as Visma would hold."""
    # 500 requests at once: on a busy machine the pool's default 5 s wait is not enough.
    async with httpx.AsyncClient(base_url=stack.simulator_url, timeout=60) as sim:
        token = (
            await sim.post(
                "/connect/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": "sim-client",
                    "client_secret": "sim-secret",
                    "scope": "vismanet_erp_service_api:read",
                    "tenant_id": "sim-tenant",
                },
            )
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}", "erp-api-background": "none"}
        answers = await asyncio.gather(
            *(sim.post("/v1/customer", json={"n": n}, headers=headers) for n in range(count))
        )
    return [a.json()["id"] for a in answers]


async def test_polling_500_waiting_jobs_keeps_to_the_request_rate(clean_database: str) -> None:
    rate = 100
    async with running_stack(clean_database, VISMA_MAX_REQUESTS_PER_SECOND=rate) as stack:
        visma_ids = await _visma_jobs(stack, 500)
        await stack.simulator.wait_until(lambda: all(j.done for j in stack.simulator.jobs.values()))
        stack.simulator.requests.clear()
        now = datetime.now(UTC)
        engine = create_engine(clean_database)
        async with create_sessionmaker(engine).begin() as session:
            for visma_id in visma_ids:
                await store.add_job(
                    session,
                    store.Job(
                        id=str(uuid.uuid4()),
                        visma_job_id=visma_id,
                        state="accepted",
                        method="POST",
                        path="/v1/customer",
                        tags={},
                        notify=False,
                        submitted_at=now,
                        accepted_at=now,
                        last_modified_at=now,
                        next_check_at=now,
                    ),
                )
        await engine.dispose()
        # A guard against a hang, derived from the rate (500 reads take 5 s at 100/s); how fast
        # they go is the benchmark's business, only their spacing is this test's.
        deadline = asyncio.get_running_loop().time() + 12 * 500 / rate
        while (await stack.api.get("/api/v1/jobs", params={"state": "succeeded"})).json()[
            "metadata"
        ]["totalCount"] < 500:
            assert asyncio.get_running_loop().time() < deadline, "jobs did not resolve"
            await asyncio.sleep(0.2)
        reads = sorted(
            r.at for r in stack.simulator.requests if r.path.startswith("/v1/background/")
        )
        assert len(reads) == 500  # one read each: every job was finished
        window = timedelta(seconds=1)
        busiest = max(
            sum(1 for t in reads[i : i + rate + 5] if t - start < window)
            for i, start in enumerate(reads)
        )
        assert busiest <= rate + 1, f"{busiest} state reads within one second"
