"""Edge cases found in review: each once failed (a 500, a stuck job, a wrong state)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import pytest

from service import store
from service.app import alert_policy, resolve_settings
from service.domain import JobRequest
from service.domain.deliveries import PROBLEM_BAD_ID
from service.domain.status import parse_time
from service.domain.visma_errors import HINT_NOT_SENT
from service.flows import resolve_due_jobs, submit_job
from service.settings import Settings
from tests.factories import insert_job
from tests.harness import Harness, in_process, signed_delivery
from tests.servers import bind_loopback, url_of


@pytest.fixture(name="harness")
async def fixture_harness(clean_database: str):
    async with in_process(clean_database) as harness:
        yield harness


@pytest.mark.parametrize(
    "params",
    [
        {"pageSize": "²"},
        {"pageNumber": "9" * 5000},
        {"pageNumber": "99999999999999999999999"},
        {"lastModifiedDateTime": "0001-01-01T00:00:00+01:00"},
    ],
)
async def test_list_jobs_odd_numbers_and_dates_are_400(harness: Harness, params: dict) -> None:
    response = await harness.client.get("/api/v1/jobs", params=params)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_input"


async def test_create_job_refuses_nan_and_deep_nesting(harness: Harness) -> None:
    nan = b'{"method": "POST", "path": "/v1/customer", "body": {"amount": NaN}}'
    deep = (
        b'{"method": "POST", "path": "/v1/customer", "body": '
        + b"[" * 100_000
        + b"]" * 100_000
        + b"}"
    )
    for raw in (nan, deep):
        response = await harness.client.post("/api/v1/jobs", content=raw)
        assert response.status_code == 400
        assert "not valid JSON" in response.json()["detail"]


async def test_deeply_nested_signed_delivery_is_stored_and_flagged(harness: Harness) -> None:
    body, headers = signed_delivery(b"[" * 100_000 + b"]" * 100_000)
    response = await harness.client.post("/webhooks/visma", content=body, headers=headers)
    assert response.status_code == 200
    [stored] = (await harness.client.get("/api/v1/deliveries")).json()["items"]
    assert stored["problem"] == "body is not JSON"


@pytest.mark.parametrize("visma_id", ["x" * 65, "abc\u0000def"])
async def test_delivery_with_an_impossible_visma_id_is_stored_and_flagged(
    harness: Harness, visma_id: str
) -> None:
    body, headers = signed_delivery({"id": visma_id})
    response = await harness.client.post("/webhooks/visma", content=body, headers=headers)
    assert response.status_code == 200
    [stored] = (await harness.client.get("/api/v1/deliveries")).json()["items"]
    assert stored["problem"] == PROBLEM_BAD_ID and stored["vismaJobId"] is None


def test_status_time_out_of_range_is_no_time() -> None:
    assert parse_time("0001-01-01T00:00:00+01:00") is None


async def test_list_jobs_visma_id_filter_takes_b64(harness: Harness) -> None:
    from service.domain import encode_id

    await insert_job(harness.resources.sessions, id="j1", visma_job_id="a/b?c", path="/v1/x")
    response = await harness.client.get("/api/v1/jobs", params={"vismaJobId": encode_id("a/b?c")})
    assert [job["id"] for job in response.json()["items"]] == ["j1"]


async def test_submission_that_never_reaches_visma_is_rejected_not_left_waiting(
    clean_database: str,
) -> None:
    closed = bind_loopback()  # bound but not listening: connections are refused
    url = url_of(closed)
    async with in_process(clean_database, VISMA_API_URL=url, VISMA_TOKEN_URL=f"{url}/token") as h:
        response = await h.client.post(
            "/api/v1/jobs", json={"method": "POST", "path": "/v1/customer", "body": {}}
        )
        job = response.json()
        assert response.status_code == 201
        assert job["state"] == "rejected"
        assert job["error"]["type"] == "NotSent"
        assert job["hint"] == HINT_NOT_SENT
    closed.close()


async def _job_row(settings: Settings, sessions, job_id: str) -> store.Job:
    async with sessions.begin() as session:
        job = await store.get_job(session, job_id)
    assert job is not None
    return job


async def test_job_whose_process_died_mid_submission_still_expires(clean_database: str) -> None:
    def crash(request: httpx.Request) -> httpx.Response:
        raise RuntimeError("the process died before the 202 was recorded")

    async with in_process(
        clean_database, visma_transport=httpx.MockTransport(crash), JOB_TTL_SECONDS=0.3
    ) as h:
        resources = h.resources
        with pytest.raises(RuntimeError):
            await submit_job(
                resources.sessions,
                resources.visma,
                JobRequest(method="POST", path="/v1/x"),
                source="api",
                poll_after_seconds=1,
                job_ttl_seconds=0.3,
                alerts=alert_policy(resources.settings),
                job_id="crashed",
            )
        job = await _job_row(resources.settings, resources.sessions, "crashed")
        assert job.state == "submitted"
        assert job.next_check_at == job.submitted_at + timedelta(seconds=0.3)
        await asyncio.sleep(0.4)
        await resolve_due_jobs(
            resources.sessions, resources.visma, resolve_settings(resources.settings)
        )
        assert (
            await _job_row(resources.settings, resources.sessions, "crashed")
        ).state == "expired"


async def test_visma_answering_at_once_with_201_is_a_success(clean_database: str) -> None:
    def visma(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/token"):
            return httpx.Response(200, json={"access_token": "t", "expires_in": 3600})
        # Not what Visma documents for a background call, but a 2xx means the work was done.
        return httpx.Response(201, headers={"Location": "https://x/v1/customer/777"})

    async with in_process(
        clean_database,
        visma_transport=httpx.MockTransport(visma),
        VISMA_API_URL="https://visma.test",
        VISMA_TOKEN_URL="https://visma.test/token",
    ) as h:
        response = await h.client.post(
            "/api/v1/jobs", json={"method": "POST", "path": "/v1/customer", "body": {}}
        )
        job = response.json()
        assert job["state"] == "succeeded"
        assert job["createdResourceId"] == "777" and job["httpStatus"] == 201


def test_polls_of_a_running_job_grow_apart_up_to_the_cap() -> None:
    from service.flows import ResolveSettings

    settings = ResolveSettings(recheck_seconds=5, max_recheck_seconds=1800)
    waits = [settings.recheck_after(n).total_seconds() for n in range(1, 12)]
    assert waits[:5] == [5, 10, 20, 40, 80]
    assert all(a <= b for a, b in zip(waits, waits[1:], strict=False))
    assert waits[-1] == 1800
