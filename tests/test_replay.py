"""Replay: a stored delivery runs through correlation and resolution again, over real HTTP
against the simulator; a settled job stays settled, and the timeline says it was replayed."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from service import store
from service.domain import decide_replay_link
from service.domain.deliveries import (
    PROBLEM_CANNOT_ADOPT,
    PROBLEM_VISMA_ID_DIFFERS,
    PROBLEM_VISMA_ID_TAKEN,
)
from service.simulator import Outcome
from service.store import DeliveryRecord, create_engine, create_sessionmaker
from service.visma import signatures
from tests.cli_process import run_cli
from tests.conftest import WEBHOOK_SECRET
from tests.harness import in_process, signed_delivery
from tests.stack import Stack, running_stack

pytestmark = pytest.mark.e2e

READ_TOKEN = "test-read-token"


@pytest.mark.parametrize(
    ("job_state", "job_visma", "holder", "linked", "problem"),
    [
        ("accepted", "v1", "j", True, None),
        ("succeeded", "v1", "j", True, None),
        ("accepted", "v2", None, False, PROBLEM_VISMA_ID_DIFFERS),
        ("submitted", None, "other", False, PROBLEM_VISMA_ID_TAKEN),
        ("rejected", None, None, False, PROBLEM_CANNOT_ADOPT),
        ("submitted", None, None, True, None),
        (None, None, None, False, None),
    ],
)
def test_decide_replay_link_follows_the_inbox_rules(job_state, job_visma, holder, linked, problem):
    link = decide_replay_link(
        named_job_id="j",
        body_problem=None,
        body_visma_id="v1",
        job_state=job_state,
        job_visma_id=job_visma,
        visma_id_holder=holder,
    )
    assert (link.job_id == "j") is linked
    assert link.problem == problem


@pytest.fixture(name="stack")
async def fixture_stack(clean_database: str):
    async with running_stack(
        clean_database, POLL_AFTER_SECONDS=300, API_READ_TOKENS=[READ_TOKEN]
    ) as stack:
        yield stack


def _kinds(job: dict) -> list[str]:
    return [event["kind"] for event in job["events"]]


async def test_replay_delivery_of_a_settled_job_changes_nothing_but_the_timeline(
    stack: Stack,
) -> None:
    job = await stack.wait_for_end((await stack.submit(body={"name": "Acme"}))["id"])
    assert job["state"] == "succeeded"
    [delivery] = await stack.inbox()

    for _ in range(2):
        response = await stack.api.post(f"/api/v1/deliveries/{delivery['id']}/replay")
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["jobId"] == job["id"]
        assert answer["job"]["state"] == "succeeded"
        assert answer["job"]["finishedAt"] == job["finishedAt"]
    after = await stack.job(job["id"])
    assert _kinds(after).count("replayed") == 2
    assert _kinds(after).count("succeeded") == 1
    replayed = [e for e in after["events"] if e["kind"] == "replayed"]
    assert replayed[0]["detail"]["deliveryId"] == delivery["id"]
    assert "nothing changes" in replayed[0]["detail"]["note"]


async def test_replay_delivery_links_and_resolves_an_open_job(
    stack: Stack, clean_database: str
) -> None:
    # The webhook never came (dropped), and polling is minutes away: the job stays accepted.
    stack.simulator.script(Outcome(webhook="drop"))
    job = await stack.submit(body={"name": "Late AS"})
    assert job["state"] == "accepted"
    # A delivery that was stored while it could not be linked (as after an outage or a bug).
    body, headers = signed_delivery({"id": job["vismaJobId"]}, job_id=job["id"])
    delivery_id = str(uuid.uuid4())
    engine = create_engine(clean_database)
    try:
        async with create_sessionmaker(engine).begin() as session:
            await store.add_delivery(
                session,
                DeliveryRecord(
                    id=delivery_id,
                    kind="visma",
                    notification_id=headers[signatures.NOTIFICATION_ID_HEADER],
                    event_id=None,
                    received_at=datetime.now(UTC),
                    headers=headers,
                    body=body,
                    verified=True,
                    claimed_job_id=job["id"],
                    visma_job_id=job["vismaJobId"],
                    problem="not linked when it arrived",
                ),
            )
    finally:
        await engine.dispose()

    response = await stack.api.post(f"/api/v1/deliveries/{delivery_id}/replay")
    assert response.status_code == 200, response.text
    replayed = response.json()["job"]
    assert replayed["state"] == "succeeded"
    assert replayed["resolvedBy"] == "webhook"
    assert "replayed" in _kinds(replayed)
    [linked] = [d for d in await stack.inbox() if d["id"] == delivery_id]
    assert linked["matched"] is True and linked["problem"] is None


async def test_replay_delivery_keeps_a_forged_delivery_unlinked(stack: Stack) -> None:
    stack.simulator.script(Outcome(webhook="drop"))
    victim = await stack.submit(body={"n": "victim"})
    other = await stack.wait_for_end((await stack.submit(body={"n": "other"}))["id"])
    [delivery] = await stack.inbox()
    assert delivery["jobId"] == other["id"]
    # The same signed body under the victim's (unsigned) header.
    body = json.dumps({"id": other["vismaJobId"]}).encode()
    raw, headers = signed_delivery(body, job_id=victim["id"], secret=WEBHOOK_SECRET)
    posted = await stack.api.post("/webhooks/visma", content=raw, headers=headers)
    assert posted.status_code == 200
    [forged] = [d for d in await stack.inbox() if d["claimedJobId"] == victim["id"]]
    assert forged["matched"] is False

    answer = (await stack.api.post(f"/api/v1/deliveries/{forged['id']}/replay")).json()
    assert answer["jobId"] is None
    victim_after = await stack.job(victim["id"])
    assert victim_after["state"] == "accepted"
    [entry] = [e for e in victim_after["events"] if e["kind"] == "replayed"]
    assert entry["detail"]["linked"] is False
    assert entry["detail"]["problem"] == PROBLEM_VISMA_ID_DIFFERS


async def test_replay_delivery_refuses_readers_and_unknown_ids(stack: Stack) -> None:
    missing = await stack.api.post("/api/v1/deliveries/nope/replay")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    read_only = await stack.api.post(
        "/api/v1/deliveries/nope/replay", headers={"Authorization": f"Bearer {READ_TOKEN}"}
    )
    assert read_only.status_code == 403 and read_only.json()["error"] == "forbidden"


async def test_replay_delivery_refuses_a_status_page_delivery(clean_database: str) -> None:
    async with in_process(clean_database) as h:
        async with h.resources.sessions.begin() as session:
            await store.add_delivery(
                session,
                DeliveryRecord(
                    id="status-1",
                    kind="status",
                    notification_id=None,
                    event_id=None,
                    received_at=datetime.now(UTC),
                    headers={},
                    body=b"{}",
                    verified=True,
                ),
            )
        response = await h.client.post("/api/v1/deliveries/status-1/replay")
    assert response.status_code == 409
    assert "only Visma's are replayed" in response.json()["detail"]


async def test_cli_replay_since_replays_every_delivery(
    stack: Stack, clean_database: str, tmp_path: Path
) -> None:
    job = await stack.wait_for_end((await stack.submit(body={"name": "Cli AS"}))["id"])
    ran = run_cli(
        "replay",
        "--since",
        "2000-01-01T00:00:00Z",
        "--json",
        cwd=tmp_path,
        DATABASE_URL=clean_database,
        VISMA_API_URL=stack.simulator_url,
        VISMA_TOKEN_URL=f"{stack.simulator_url}/connect/token",
        VISMA_CLIENT_ID="sim-client",
        VISMA_CLIENT_SECRET="sim-secret",
        VISMA_TENANT_ID="sim-tenant",
    )
    assert ran.code == 0, ran.err
    [row] = json.loads(ran.out)["replayed"]
    assert row["jobId"] == job["id"] and row["stateRead"] is False
    after = await stack.job(job["id"])
    assert after["state"] == "succeeded"
    assert [e["source"] for e in after["events"] if e["kind"] == "replayed"] == ["cli"]
