"""Kept results: what a finished request returned, served at GET /api/v1/jobs/{id}/result after
Visma forgets the job (410). Real servers over loopback against the simulator."""

from __future__ import annotations

import asyncio
import base64
import json
import time

import httpx
import pytest

from service.domain import keep_result, shown_content
from service.simulator import Outcome
from tests.stack import Stack, running_stack
from tests.test_simulator import token_form

pytestmark = pytest.mark.e2e


def test_keep_result_cuts_content_beyond_the_limit_and_marks_it() -> None:
    kept = keep_result(
        status=200, headers={}, content_type="text/plain", content=b"x" * 10, max_bytes=4
    )
    assert (kept.content, kept.size, kept.truncated) == (b"xxxx", 10, True)
    whole = keep_result(status=200, headers={}, content_type=None, content=b"ok", max_bytes=4)
    assert (whole.content, whole.size, whole.truncated) == (b"ok", 2, False)


def test_shown_content_keeps_cut_text_as_text_and_other_bytes_as_base64() -> None:
    cut = "é".encode() * 3  # 6 bytes; cut at 5 splits the last character
    assert shown_content(cut[:5], truncated=True) == ("éé", "utf-8")
    raw = bytes([0xFF, 0x00, 0x81])
    assert shown_content(raw, truncated=False) == (base64.b64encode(raw).decode(), "base64")
    assert shown_content(None, truncated=False) == (None, "utf-8")


@pytest.fixture(name="stack")
async def fixture_stack(clean_database: str):
    async with running_stack(
        clean_database,
        POLL_AFTER_SECONDS=300,
        MAX_RESULT_BYTES=200,
        chaos={"forget_after_seconds": 1.0},
    ) as stack:
        yield stack


async def _result(stack: Stack, job_id: str) -> httpx.Response:
    return await stack.api.get(f"/api/v1/jobs/{job_id}/result")


async def test_get_job_result_outlives_visma_forgetting_the_job(stack: Stack) -> None:
    stack.simulator.script(Outcome(content={"number": "10042"}))
    job = await stack.wait_for_end((await stack.submit(body={"name": "Acme"}))["id"])
    assert job["state"] == "succeeded"
    # Visma forgets the job: its content now answers 410.
    deadline = time.monotonic() + 10
    async with httpx.AsyncClient(base_url=stack.simulator_url) as visma:
        form = token_form(stack.simulator.config)
        token = (await visma.post("/connect/token", data=form)).json()["access_token"]
        while True:
            content = await visma.get(
                f"/v1/background/{job['vismaJobId']}/content",
                headers={"Authorization": f"Bearer {token}"},
            )
            if content.status_code == 410:
                break
            assert time.monotonic() < deadline, content.status_code
            await asyncio.sleep(0.1)

    response = await _result(stack, job["id"])
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["jobId"] == job["id"]
    assert result["status"] == 201
    assert result["headers"]["Location"].endswith("/v1/customer/" + job["createdResourceId"])
    content = json.loads(result["content"])
    assert content["number"] == "10042"
    # The created record's version, as the body's timeStamp and the job's resultEtag show it.
    assert f'"{content["timeStamp"]}"' == result["headers"]["ETag"] == job["resultEtag"]
    assert result["contentEncoding"] == "utf-8"
    assert result["contentType"].startswith("application/json")
    assert result["truncated"] is False


async def test_get_job_result_of_a_failed_job_is_vismas_error_body(stack: Stack) -> None:
    stack.simulator.script(Outcome(kind="no_license"))
    job = await stack.wait_for_end((await stack.submit(body={"name": "Acme"}))["id"])
    assert job["state"] == "failed"
    result = (await _result(stack, job["id"])).json()
    assert result["status"] == 400
    assert json.loads(result["content"])["ExceptionFaultCode"] == "12027"


async def test_get_job_result_keeps_the_start_of_a_large_content(stack: Stack) -> None:
    stack.simulator.script(Outcome(content={"blob": "é" * 500}))
    job = await stack.wait_for_end((await stack.submit(body={"name": "Big"}))["id"])
    result = (await _result(stack, job["id"])).json()
    assert result["truncated"] is True
    assert result["size"] > 1000
    assert len(result["content"].encode()) == 200  # MAX_RESULT_BYTES
    assert result["content"].startswith('{"blob":"')


async def test_get_job_result_is_404_until_there_is_one(stack: Stack) -> None:
    stack.simulator.script(Outcome(webhook="drop"))
    job = await stack.submit(body={"name": "Open"})
    response = await _result(stack, job["id"])
    assert response.status_code == 404
    assert "no kept result" in response.json()["detail"]
    missing = await _result(stack, "no-such-job")
    assert missing.status_code == 404 and "no job with id" in missing.json()["detail"]


async def test_max_result_bytes_0_spends_no_content_read_on_a_success(clean_database: str) -> None:
    async with running_stack(clean_database, POLL_AFTER_SECONDS=300, MAX_RESULT_BYTES=0) as stack:
        stack.simulator.script(Outcome(content={"number": "10042"}))
        ok = await stack.wait_for_end((await stack.submit(body={"name": "Acme"}))["id"])
        stack.simulator.script(Outcome(kind="no_license"))
        failed = await stack.wait_for_end((await stack.submit(body={"name": "Acme"}))["id"])
        reads = {r.job_id: r for r in stack.simulator.requests if r.kind == "content"}
        # The success keeps its status and headers only; the failure's error is still read,
        # because it decides the outcome.
        assert ok["state"] == "succeeded" and ok["vismaJobId"] not in reads
        assert failed["state"] == "failed" and failed["vismaJobId"] in reads
        result = (await _result(stack, ok["id"])).json()
        assert result["status"] == 201 and result["content"] is None
