"""Awaiting a job: `GET /api/v1/jobs/{id}?wait=N` with If-None-Match answers when the job
changes (in this process, or another through PostgreSQL's NOTIFY), else 304 after N s; and
`visma-hooks submit --wait`. Real servers over loopback, against the simulator."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import pytest

from service import store
from service.simulator import Outcome
from service.store import is_sqlite
from service.web.jobs_api import DISCONNECT_CHECK_SECONDS
from tests.cli_process import run_cli
from tests.harness import signed_delivery
from tests.stack import Stack, running_stack

pytestmark = pytest.mark.e2e


@pytest.fixture(name="stack")
async def fixture_stack(clean_database: str):
    async with running_stack(clean_database, POLL_AFTER_SECONDS=300) as stack:
        yield stack


async def _open_job(stack: Stack) -> tuple[dict, str]:
    """An accepted job whose webhook was dropped (polling is minutes away), and its ETag."""
    stack.simulator.script(Outcome(webhook="drop"))
    job = await stack.submit(body={"name": "Waiting AS"})
    assert job["state"] == "accepted"
    response = await stack.api.get(f"/api/v1/jobs/{job['id']}")
    return job, response.headers["etag"]


async def _deliver_webhook(stack: Stack, job: dict) -> None:
    body, headers = signed_delivery({"id": job["vismaJobId"]}, job_id=job["id"])
    async with httpx.AsyncClient(base_url=stack.service_url) as client:
        response = await client.post("/webhooks/visma", content=body, headers=headers)
    assert response.status_code == 200, response.text


async def test_get_job_wait_answers_as_soon_as_the_job_changes(stack: Stack) -> None:
    job, etag = await _open_job(stack)
    started = time.monotonic()
    waiting = asyncio.create_task(
        stack.api.get(
            f"/api/v1/jobs/{job['id']}", params={"wait": "30"}, headers={"If-None-Match": etag}
        )
    )
    await _until(lambda: store.JOB_CHANGES.waiting() >= 1)
    assert not waiting.done()
    await _deliver_webhook(stack, job)
    response = await waiting
    assert response.status_code == 200
    assert response.headers["etag"] != etag
    assert time.monotonic() - started < 10
    # The first change may be the webhook's timeline entry; waiting again reaches the outcome.
    final = response
    while final.json()["state"] == "accepted":
        final = await stack.api.get(
            f"/api/v1/jobs/{job['id']}",
            params={"wait": "30"},
            headers={"If-None-Match": final.headers["etag"]},
        )
        assert final.status_code == 200
    assert final.json()["state"] == "succeeded"


async def test_get_job_wait_answers_304_after_the_wait(stack: Stack) -> None:
    job, etag = await _open_job(stack)
    started = time.monotonic()
    response = await stack.api.get(
        f"/api/v1/jobs/{job['id']}", params={"wait": "1"}, headers={"If-None-Match": etag}
    )
    elapsed = time.monotonic() - started
    assert response.status_code == 304
    assert response.headers["etag"] == etag
    assert 1.0 <= elapsed < 5.0
    assert store.JOB_CHANGES.waiting() == 0


async def test_get_job_wait_until_finished_answers_when_the_job_ends_not_on_its_webhook(
    stack: Stack,
) -> None:
    job, _etag = await _open_job(stack)
    waiting = asyncio.create_task(
        stack.api.get(f"/api/v1/jobs/{job['id']}", params={"wait": "30", "until": "finished"})
    )
    await _until(lambda: store.JOB_CHANGES.waiting() >= 1)
    await _deliver_webhook(stack, job)  # first the webhook's entry, then the outcome
    response = await waiting
    assert response.status_code == 200
    assert response.json()["state"] == "succeeded"
    kinds = [e["kind"] for e in response.json()["events"]]
    assert "webhook" in kinds and kinds[-1] == "succeeded"


async def test_get_job_wait_until_finished_gives_the_job_as_it_stands_when_the_wait_ends(
    stack: Stack,
) -> None:
    job, etag = await _open_job(stack)
    url = f"/api/v1/jobs/{job['id']}"
    unfinished = await stack.api.get(url, params={"wait": "1", "until": "finished"})
    held = await stack.api.get(
        url, params={"wait": "1", "until": "finished"}, headers={"If-None-Match": etag}
    )
    bad = await stack.api.get(url, params={"wait": "1", "until": "changed"})
    assert unfinished.status_code == 200 and unfinished.json()["state"] == "accepted"
    assert held.status_code == 304
    assert bad.status_code == 400 and "until must be 'finished'" in bad.json()["detail"]


async def test_get_job_wait_with_another_etag_or_none_answers_at_once(stack: Stack) -> None:
    job, _etag = await _open_job(stack)
    started = time.monotonic()
    other = await stack.api.get(
        f"/api/v1/jobs/{job['id']}", params={"wait": "30"}, headers={"If-None-Match": '"old"'}
    )
    plain = await stack.api.get(f"/api/v1/jobs/{job['id']}", params={"wait": "30"})
    assert other.status_code == plain.status_code == 200
    assert time.monotonic() - started < 5


async def test_get_job_wait_stops_waiting_when_the_client_goes_away(stack: Stack) -> None:
    job, etag = await _open_job(stack)
    async with httpx.AsyncClient(base_url=stack.service_url, headers=stack.api.headers) as gone:
        waiting = asyncio.create_task(
            gone.get(
                f"/api/v1/jobs/{job['id']}",
                params={"wait": "60"},
                headers={"If-None-Match": etag},
            )
        )
        await _until(lambda: store.JOB_CHANGES.waiting() >= 1)
        waiting.cancel()  # the client hangs up mid-wait
    # Within one disconnect check (plus a margin), not the 60 s it asked for.
    await _until(lambda: store.JOB_CHANGES.waiting() == 0, timeout=DISCONNECT_CHECK_SECONDS + 5)


@pytest.mark.parametrize("wait", ["61", "-1", "1.5", "soon"])
async def test_get_job_wait_refuses_a_bad_wait(stack: Stack, wait: str) -> None:
    job, etag = await _open_job(stack)
    response = await stack.api.get(
        f"/api/v1/jobs/{job['id']}", params={"wait": wait}, headers={"If-None-Match": etag}
    )
    assert response.status_code == 400
    assert "wait must be" in response.json()["detail"]


async def test_get_job_wait_costs_little_for_many_waiters(clean_database: str) -> None:
    waiters = 200
    # All the waiters come from 127.0.0.1, more than MAX_CONNECTIONS_PER_CLIENT lets one
    # address hold by default: this test is about their cost, so it lets them in.
    limits = httpx.Limits(max_connections=waiters + 10, max_keepalive_connections=waiters + 10)
    async with (
        running_stack(
            clean_database, POLL_AFTER_SECONDS=300, MAX_CONNECTIONS_PER_CLIENT=waiters + 20
        ) as stack,
        httpx.AsyncClient(
            base_url=stack.service_url, headers=stack.api.headers, limits=limits, timeout=60
        ) as client,
    ):
        job, etag = await _open_job(stack)
        tasks = [
            asyncio.create_task(
                client.get(
                    f"/api/v1/jobs/{job['id']}",
                    params={"wait": "45"},
                    headers={"If-None-Match": etag},
                )
            )
            for _ in range(waiters)
        ]
        await _until(lambda: store.JOB_CHANGES.waiting() >= waiters, timeout=30)
        started = time.monotonic()
        await _deliver_webhook(stack, job)
        answers = await asyncio.gather(*tasks)
        fanned_out = time.monotonic() - started
    assert {a.status_code for a in answers} == {200}
    assert fanned_out < 15


async def test_get_job_wait_hears_a_change_made_by_another_process(
    stack: Stack, clean_database: str, tmp_path: Path
) -> None:
    if is_sqlite(clean_database):
        pytest.skip("on SQLite waiters hear only their own process's changes")
    job = await stack.wait_for_end((await stack.submit(body={"name": "Other AS"}))["id"])
    etag = (await stack.api.get(f"/api/v1/jobs/{job['id']}")).headers["etag"]
    [delivery] = await stack.inbox()
    waiting = asyncio.create_task(
        stack.api.get(
            f"/api/v1/jobs/{job['id']}", params={"wait": "40"}, headers={"If-None-Match": etag}
        )
    )
    await _until(lambda: store.JOB_CHANGES.waiting() >= 1)
    # Another process (the CLI) adds to the job's timeline; only NOTIFY can tell the service.
    ran = await asyncio.to_thread(
        run_cli, "replay", "--id", delivery["id"], cwd=tmp_path, **_cli_settings(stack)
    )
    assert ran.code == 0, ran.err
    started = time.monotonic()
    response = await waiting
    assert response.status_code == 200
    assert "replayed" in [e["kind"] for e in response.json()["events"]]
    assert time.monotonic() - started < 10


def _cli_settings(stack: Stack) -> dict[str, str]:
    return {
        "DATABASE_URL": stack.settings.DATABASE_URL,
        "VISMA_API_URL": stack.simulator_url,
        "VISMA_TOKEN_URL": f"{stack.simulator_url}/connect/token",
        "VISMA_CLIENT_ID": "sim-client",
        "VISMA_CLIENT_SECRET": "sim-secret",
        "VISMA_TENANT_ID": "sim-tenant",
    }


@pytest.mark.parametrize(
    ("outcome", "state", "code"),
    [(Outcome(), "succeeded", 0), (Outcome(kind="no_license"), "failed", 1)],
)
async def test_cli_submit_wait_prints_the_outcome(
    stack: Stack, tmp_path: Path, outcome: Outcome, state: str, code: int
) -> None:
    stack.simulator.script(outcome)
    ran = await asyncio.to_thread(
        run_cli,
        "submit",
        "--path",
        "/v1/customer",
        "--body",
        '{"name": "Cli AS"}',
        "--wait",
        "--json",
        cwd=tmp_path,
        timeout=60,
        **_cli_settings(stack),
    )
    assert ran.code == code, ran.err
    assert json.loads(ran.out)["state"] == state


async def _until(condition, *, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)
