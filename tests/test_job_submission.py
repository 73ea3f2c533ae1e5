"""Submitting a job when Visma is not there, answers at once, or the process dies midway."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import pytest

from service import store
from service.app import resolve_settings, submit_settings
from service.domain import JobRequest
from service.domain.visma_errors import HINT_NOT_SENT
from service.flows import resolve_due_jobs, submit_job
from service.settings import Settings
from tests.harness import in_process
from tests.servers import bind_loopback, url_of


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
                settings=submit_settings(resources.settings),
                job_id="crashed",
            )
        job = await _job_row(resources.settings, resources.sessions, "crashed")
        assert job.state == "submitted"
        assert job.next_check_at == job.submitted_at + timedelta(seconds=0.3)
        # Its backstop check comes due at the TTL: the resolver then expires it.
        settings = resolve_settings(resources.settings)
        deadline = asyncio.get_running_loop().time() + 10
        while (
            await _job_row(resources.settings, resources.sessions, "crashed")
        ).state != "expired":
            assert asyncio.get_running_loop().time() < deadline, "the job never expired"
            await resolve_due_jobs(resources.sessions, resources.visma, settings)
            await asyncio.sleep(0.05)


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
