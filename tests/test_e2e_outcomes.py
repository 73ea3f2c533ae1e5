"""Outcomes that hold: a forged correlation changes nothing, an answer that proves nothing leaves
the job open for its webhook, a 403 read ends the job. Service and simulator are real servers."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from service.app import create_app
from service.domain.deliveries import (
    PROBLEM_CANNOT_ADOPT,
    PROBLEM_VISMA_ID_DIFFERS,
    PROBLEM_VISMA_ID_TAKEN,
)
from service.domain.visma_errors import HINT_READ_FORBIDDEN
from service.simulator import Outcome
from service.store import Delivery
from service.visma import signatures
from tests.conftest import API_TOKEN, WEBHOOK_SECRET, make_settings
from tests.servers import bind_loopback, serving, url_of
from tests.stack import TERMINAL, Stack, running_stack, stored_row

pytestmark = pytest.mark.e2e


@pytest.fixture(name="stack")
async def fixture_stack(clean_database: str):
    async with running_stack(clean_database, POLL_AFTER_SECONDS=300) as stack:
        yield stack


async def replay(stack: Stack, delivery: Delivery, *, as_job: str) -> dict:
    """What an attacker holding a delivery's body and signature can send: the same signed
    body under another job's (unsigned) header and a fresh notification id."""
    headers = {
        "content-type": "application/json",
        signatures.SIGNATURE_HEADER: delivery.headers[signatures.SIGNATURE_HEADER],
        signatures.NOTIFICATION_ID_HEADER: str(uuid.uuid4()),
        "vh-job-id": as_job,
    }
    async with httpx.AsyncClient(base_url=stack.service_url) as client:
        response = await client.post("/webhooks/visma", content=delivery.body, headers=headers)
    assert response.status_code == 200, response.text
    answer: dict = response.json()
    return answer


async def open_job(stack: Stack, outcome: Outcome) -> dict:
    """A submitted job that stays open: its webhook is dropped (and polling is far off)."""
    stack.simulator.script(outcome)
    job = await stack.submit(body={"n": str(uuid.uuid4())})
    assert job["state"] in ("submitted", "accepted")
    return job


async def alerts(stack: Stack) -> list[dict]:
    items: list[dict] = (await stack.api.get("/api/v1/alerts")).json()["items"]
    return items


async def test_a_delivery_replayed_under_another_jobs_header_changes_nothing(
    stack: Stack, clean_database: str
) -> None:
    stack.simulator.script(Outcome(kind="no_license"))
    victim_source = await stack.wait_for_end((await stack.submit(body={"n": "a"}))["id"])
    assert victim_source["state"] == "failed"
    [delivery] = await stack.inbox()
    captured = await stored_row(clean_database, Delivery, delivery["id"])
    # The API never hands out what a replay needs.
    assert delivery["headers"][signatures.SIGNATURE_HEADER] == "[redacted]"

    lost_202 = await open_job(stack, Outcome(drop_accept=True, webhook="drop"))
    accepted = await open_job(stack, Outcome(webhook="drop"))
    stack.simulator.script(Outcome(kind="reject"))
    rejected = await stack.submit(body={"n": "c"})
    assert rejected["state"] == "rejected"
    targets = {
        lost_202["id"]: PROBLEM_VISMA_ID_TAKEN,
        accepted["id"]: PROBLEM_VISMA_ID_DIFFERS,
        rejected["id"]: PROBLEM_VISMA_ID_TAKEN,
    }
    before = {job_id: await stack.api.get(f"/api/v1/jobs/{job_id}") for job_id in targets}
    alerts_before = len(await alerts(stack))

    for job_id in targets:
        answer = await replay(stack, captured, as_job=job_id)
        # Stored, but linked to nothing: the answer names no job.
        assert answer["status"] == "stored" and answer["matchedJob"] is None

    flagged = {d["claimedJobId"]: d for d in await stack.inbox() if d["id"] != delivery["id"]}
    for job_id, problem in targets.items():
        assert flagged[job_id]["matched"] is False and flagged[job_id]["problem"] == problem
        after = await stack.api.get(f"/api/v1/jobs/{job_id}")
        assert after.headers["etag"] == before[job_id].headers["etag"]
        assert after.json() == before[job_id].json()
    assert len(await alerts(stack)) == alerts_before  # no failure, no burst
    assert (await stack.job(lost_202["id"]))["vismaJobId"] is None


async def test_a_rejected_job_without_a_visma_id_adopts_none(stack: Stack) -> None:
    stack.simulator.script(Outcome(kind="reject"))
    rejected = await stack.submit(body={})
    # A signed body naming a Visma job nobody holds (a real one of another integration, say).
    other = await open_job(stack, Outcome(webhook="drop"))
    body = (
        f'{{"id": "{uuid.uuid4()}", "stateLocation": "{stack.simulator_url}/v1/background/x"}}'
    ).encode()
    headers = {
        signatures.SIGNATURE_HEADER: signatures.sign(body, WEBHOOK_SECRET),
        signatures.NOTIFICATION_ID_HEADER: str(uuid.uuid4()),
        "vh-job-id": rejected["id"],
    }
    async with httpx.AsyncClient(base_url=stack.service_url) as client:
        response = await client.post("/webhooks/visma", content=body, headers=headers)
    assert response.status_code == 200
    [flagged] = [d for d in await stack.inbox() if d["claimedJobId"] == rejected["id"]]
    assert (flagged["matched"], flagged["problem"]) == (False, PROBLEM_CANNOT_ADOPT)
    job = await stack.job(rejected["id"])
    assert (job["state"], job["vismaJobId"]) == ("rejected", None)
    assert (await stack.job(other["id"]))["state"] == "accepted"


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        (Outcome(drop_accept=True), "no answer from Visma"),
        (Outcome(gateway_status=504), "HTTP 504 without Visma's error body"),
        (Outcome(gateway_status=502), "HTTP 502 without Visma's error body"),
    ],
    ids=["lost-202", "bare-504", "bare-502"],
)
async def test_a_submission_with_no_answer_from_visma_waits_for_its_webhook(
    stack: Stack, answer: Outcome, why: str
) -> None:
    stack.simulator.script(answer)
    submitted = await stack.submit(path="/v1/customer", body={"name": "Maybe AS"})
    assert submitted["state"] == "submitted"  # not rejected: Visma may well have run it
    assert submitted["vismaJobId"] is None
    uncertain = [e for e in submitted["events"] if e["kind"] == "submit_uncertain"]
    assert len(uncertain) == 1 and why in uncertain[0]["detail"]["message"]

    job = await stack.wait_for_end(submitted["id"])
    assert job["state"] == "succeeded" and job["resolvedBy"] == "webhook"
    visma_job = stack.simulator.jobs[job["vismaJobId"]]
    assert job["createdResourceId"] == visma_job.result.headers["Location"].rsplit("/", 1)[-1]
    adopted = [e for e in job["events"] if e["kind"] == "visma_id_adopted"]
    assert adopted[0]["detail"]["vismaJobId"] == visma_job.id
    submits = [r for r in stack.simulator.requests if r.kind == "submit"]
    assert len(submits) == 1  # never re-sent


@pytest.mark.parametrize(
    ("outcome", "status"),
    [
        (Outcome(kind="reject", reject_status=400), 400),
        (Outcome(kind="reject", reject_status=500, fault_code="10000"), 500),
    ],
    ids=["400", "500-with-visma-error"],
)
async def test_a_submission_visma_refused_is_rejected(
    stack: Stack, outcome: Outcome, status: int
) -> None:
    stack.simulator.script(outcome)
    job = await stack.submit(path="/v1/customer", body={})
    assert job["state"] == "rejected" and job["httpStatus"] == status
    assert job["error"]["message"]
    assert len(stack.simulator.jobs) == 0  # and Visma indeed ran nothing


async def test_a_403_state_read_ends_the_job_after_one_read_with_its_hint(stack: Stack) -> None:
    # The job runs a moment, so its webhook comes after the 202: a webhook that beats the 202
    # makes a candidate read first (answered 403 too), which is another test's matter.
    stack.simulator.script(Outcome(state_status=403, duration_seconds=0.3))
    submitted = await stack.submit(body={"name": "Other Company AS"})
    job = await stack.wait_for_end(submitted["id"])
    assert job["state"] == "failed" and job["hint"] == HINT_READ_FORBIDDEN
    reads = [
        r for r in stack.simulator.requests if r.kind == "state" and r.job_id == job["vismaJobId"]
    ]
    assert [r.status for r in reads] == [403]  # one read, not retried until the TTL


def free_port() -> int:
    with bind_loopback() as sock:
        port: int = sock.getsockname()[1]
    return port


def wait_until_serving(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30  # the interpreter's start-up, on a busy machine
    with httpx.Client(base_url=url) as client:
        while time.monotonic() < deadline:
            assert process.poll() is None, "visma-hooks simulate exited"
            try:
                if client.get("/_sim/stats").status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
    raise AssertionError("visma-hooks simulate did not start")


@pytest.fixture(name="cli_simulator")
def fixture_cli_simulator() -> Iterator[tuple[str, socket.socket]]:
    """`visma-hooks simulate`, started as the README says (so it serves on uvloop), sending
    its webhooks to a socket bound here for the service; yields its URL and that socket."""
    service_sock = bind_loopback()
    port = free_port()
    env = {
        **os.environ,
        "VISMA_CLIENT_ID": "sim-client",
        "VISMA_CLIENT_SECRET": "sim-secret",
        "VISMA_TENANT_ID": "sim-tenant",
        "VISMA_WEBHOOK_SECRETS": WEBHOOK_SECRET,
    }
    command = [
        os.path.join(os.path.dirname(sys.executable), "visma-hooks"),
        "simulate",
        "--port",
        str(port),
        "--webhook-url",
        f"{url_of(service_sock)}/webhooks/visma",
    ]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_serving(url, process)
        yield url, service_sock
    finally:
        process.terminate()
        process.wait(timeout=10)
        service_sock.close()


async def test_the_cli_simulators_lost_202_ends_succeeded(
    clean_database: str, cli_simulator: tuple[str, socket.socket]
) -> None:
    simulator_url, service_sock = cli_simulator
    settings = make_settings(
        clean_database,
        VISMA_API_URL=simulator_url,
        VISMA_TOKEN_URL=f"{simulator_url}/connect/token",
    )
    async with (
        serving(create_app(settings), service_sock) as service_url,
        httpx.AsyncClient(
            base_url=service_url, headers={"Authorization": f"Bearer {API_TOKEN}"}
        ) as api,
        httpx.AsyncClient(base_url=simulator_url) as simulator,
    ):
        scripted = await simulator.post("/_sim/outcomes", json={"drop_accept": True})
        assert scripted.status_code == 201
        response = await api.post("/api/v1/jobs", json={"method": "POST", "path": "/v1/customer"})
        assert response.status_code == 201 and response.json()["state"] == "submitted"
        # The connection closed without an answer (not a 500 from the simulator's server).
        [uncertain] = [e for e in response.json()["events"] if e["kind"] == "submit_uncertain"]
        assert uncertain["detail"]["message"].startswith("no answer from Visma")
        job_id = response.json()["id"]
        deadline = time.monotonic() + 15
        while (job := (await api.get(f"/api/v1/jobs/{job_id}")).json())["state"] not in TERMINAL:
            assert time.monotonic() < deadline, job
            await asyncio.sleep(0.05)
        assert job["state"] == "succeeded" and job["createdResourceId"]
