"""The API's edge on a real database: submission size and path limits (nothing refused leaves a
job behind, nothing refused reaches Visma), read-only tokens, and what `/readyz` tells anyone."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import ValidationError

from service import store
from service.app import create_app, submit_settings
from service.flows import resend_job
from service.flows.clock import utcnow
from service.settings import Settings
from service.simulator import SimulatorState, create_simulator_app
from service.simulator.config import SimulatorConfig
from service.store import create_engine
from service.web.auth import READ_ONLY
from service.web.health import DATABASE_NOT_REACHABLE, DATABASE_SLOW, READY_TIMEOUT_SECONDS
from tests.conftest import API_TOKEN
from tests.harness import Harness, in_process
from tests.servers import bind_loopback

READ_TOKEN = "test-read-token"
JOB = {"method": "POST", "path": "/v1/customer", "body": {"name": "Acme AS"}}


@pytest.fixture(name="simulator_app")
def fixture_simulator_app():
    return create_simulator_app(SimulatorConfig(webhook_url=None))


@pytest.fixture(name="harness")
async def fixture_harness(clean_database: str, simulator_app) -> AsyncIterator[Harness]:
    """The service in process, sending to the simulator, with a read-only token besides."""
    transport = httpx.ASGITransport(app=simulator_app)
    async with in_process(
        clean_database, visma_transport=transport, API_READ_TOKENS=[READ_TOKEN]
    ) as harness:
        yield harness


def submissions_seen(simulator_app) -> list[str]:
    simulator: SimulatorState = simulator_app.state.simulator
    return [r.path for r in simulator.requests if r.kind == "submit"]


async def job_count(harness: Harness) -> int:
    listed = await harness.client.get("/api/v1/jobs")
    assert listed.status_code == 200, listed.text
    total: int = listed.json()["metadata"]["totalCount"]
    return total


async def test_create_job_is_sent_to_visma(harness: Harness, simulator_app) -> None:
    # The baseline the refusals below are measured against: this one goes through.
    response = await harness.client.post("/api/v1/jobs", json=JOB)
    assert response.status_code == 201, response.text
    assert response.json()["state"] == "accepted"
    assert submissions_seen(simulator_app) == ["/v1/customer"]


async def test_create_job_over_max_submit_bytes_is_413_and_writes_nothing(
    clean_database: str, simulator_app
) -> None:
    transport = httpx.ASGITransport(app=simulator_app)
    async with in_process(
        clean_database, visma_transport=transport, MAX_SUBMIT_BYTES=10_000
    ) as harness:
        big = {**JOB, "body": {"name": "x" * 20_000}}
        response = await harness.client.post("/api/v1/jobs", json=big)
        assert response.status_code == 413
        assert response.json() == {
            "error": "too_large",
            "detail": "body is larger than MAX_SUBMIT_BYTES=10000",
        }
        # Counted while reading too, when the sender declares no length.
        chunks = [json.dumps(big).encode()[i : i + 4096] for i in range(0, 20_100, 4096)]

        async def stream():
            for chunk in chunks:
                yield chunk

        streamed = await harness.client.post("/api/v1/jobs", content=stream())
        assert streamed.status_code == 413
        assert await job_count(harness) == 0
    assert submissions_seen(simulator_app) == []


async def test_create_job_default_limit_is_one_mib(harness: Harness) -> None:
    big = {**JOB, "body": {"name": "x" * 1_100_000}}
    response = await harness.client.post("/api/v1/jobs", json=big)
    assert response.status_code == 413
    assert "MAX_SUBMIT_BYTES=1048576" in response.json()["detail"]


async def test_create_job_with_a_100_kb_path_is_400_and_leaves_no_job(
    harness: Harness, simulator_app
) -> None:
    response = await harness.client.post(
        "/api/v1/jobs", json={**JOB, "path": "/v1/customer/" + "a" * 100_000}
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_input"
    assert "path must be at most 2048 characters" in response.json()["detail"]
    assert await job_count(harness) == 0
    assert submissions_seen(simulator_app) == []


@pytest.mark.parametrize(
    "path",
    [
        "/v1/%2e%2e/v1/background/abc",
        "/v1/customer/%2E./x",
        "/v1/customer\\..\\background",
        "/v1//background/abc",
        "/v1/customer//1",
        "/v1/customer/a%2Fb",
        "/v1/customer/a%5cb",
        "/v1/customer/a%0d%0aX-Injected:%201",
        "/v1/customer/\x85",
        "/v1/customer/a\u202eb",
        "/v1/%62ackground/abc",
        "/v1/customer/a%zz",
    ],
)
async def test_create_job_refuses_paths_a_server_could_read_as_another(
    harness: Harness, simulator_app, path: str
) -> None:
    response = await harness.client.post("/api/v1/jobs", json={**JOB, "path": path})
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_input"
    assert response.json()["detail"].startswith("path")
    assert await job_count(harness) == 0
    assert submissions_seen(simulator_app) == []


async def test_a_stored_path_visma_cannot_be_sent_ends_rejected_not_submitted(
    harness: Harness, simulator_app
) -> None:
    # A job written before paths had a limit: resending it must not leave a new job
    # `submitted` for ever (the request cannot even be built), nor raise.
    old_id = "job-before-the-limit"
    now = utcnow()
    async with harness.resources.sessions.begin() as session:
        await store.add_job(
            session,
            store.Job(
                id=old_id,
                state="rejected",
                method="POST",
                path="/v1/customer/" + "a" * 100_000,
                tags={},
                notify=True,
                submitted_at=now,
                last_modified_at=now,
            ),
        )
    new_id = await resend_job(
        harness.resources.sessions,
        harness.resources.visma,
        old_id,
        source="api",
        settings=submit_settings(harness.resources.settings),
    )
    job = (await harness.client.get(f"/api/v1/jobs/{new_id}")).json()
    assert job["state"] == "rejected"
    assert job["error"]["type"] == "NotSent"
    assert "URL too long" in job["error"]["message"]
    assert submissions_seen(simulator_app) == []


async def test_read_token_reads_but_cannot_submit(harness: Harness, simulator_app) -> None:
    read = {"Authorization": f"Bearer {READ_TOKEN}"}
    listed = await harness.client.get("/api/v1/jobs", headers=read)
    assert listed.status_code == 200
    refused = await harness.client.post("/api/v1/jobs", json=JOB, headers=read)
    assert refused.status_code == 403
    assert refused.json() == {"error": "forbidden", "detail": READ_ONLY}
    assert await job_count(harness) == 0
    assert submissions_seen(simulator_app) == []
    # The same request with a full token goes through.
    accepted = await harness.client.post(
        "/api/v1/jobs", json=JOB, headers={"Authorization": f"Bearer {API_TOKEN}"}
    )
    assert accepted.status_code == 201
    job_id = accepted.json()["id"]
    shown = await harness.client.get(f"/api/v1/jobs/{job_id}", headers=read)
    assert shown.status_code == 200 and shown.json()["id"] == job_id


async def test_read_tokens_alone_make_a_read_only_api(clean_database: str) -> None:
    async with in_process(clean_database, API_TOKENS=[], API_READ_TOKENS=[READ_TOKEN]) as h:
        read = {"Authorization": f"Bearer {READ_TOKEN}"}
        assert (await h.client.get("/api/v1/alerts", headers=read)).status_code == 200
        refused = await h.client.post("/api/v1/jobs", json=JOB, headers=read)
        assert refused.status_code == 403
        wrong = await h.client.get("/api/v1/jobs", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401


def test_a_token_in_both_lists_is_a_settings_error() -> None:
    with pytest.raises(ValidationError, match="both API_TOKENS and API_READ_TOKENS"):
        Settings(_env_file=None, API_TOKENS="a,b", API_READ_TOKENS="b")  # type: ignore[call-arg]


async def readyz_with_database(harness: Harness, url: str) -> httpx.Response:
    """`/readyz` of the service when its database is the one at `url`."""
    engine = create_engine(url)
    try:
        resources = dataclasses.replace(harness.resources, engine=engine)
        app = create_app(resources=resources)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver", timeout=30
        ) as client:
            return await client.get("/readyz")
    finally:
        await engine.dispose()


async def test_readyz_says_what_is_wrong_in_words(harness: Harness) -> None:
    # A database nobody listens on, with a password in its URL: none of it may show.
    response = await readyz_with_database(harness, "postgresql://visma:hunter2@127.0.0.1:9/erp")
    assert response.status_code == 503
    assert response.json() == {"error": "unavailable", "detail": DATABASE_NOT_REACHABLE}
    for secret in ("127.0.0.1", ":9", "hunter2", "visma", "Error", "("):
        assert secret not in response.text


async def test_readyz_gives_up_on_a_database_that_never_answers(harness: Harness) -> None:
    # A port that takes connections and never says a word, as a hung database server does.
    silent = bind_loopback()
    silent.listen()
    started = time.monotonic()
    try:
        port = silent.getsockname()[1]
        response = await readyz_with_database(harness, f"postgresql://u@127.0.0.1:{port}/erp")
    finally:
        silent.close()
    assert response.status_code == 503
    assert response.json() == {"error": "unavailable", "detail": DATABASE_SLOW}
    assert time.monotonic() - started < READY_TIMEOUT_SECONDS + 2
