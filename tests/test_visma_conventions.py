"""Visma's conventions, over real HTTP against the simulator: a job that asked for no webhook is
polled from the start; If-Match and ETags (412 fails the job with a hint, a finished update
shows the new ETag as resultEtag); compressed answers both ways."""

from __future__ import annotations

import gzip
import json
import time
import zlib

import brotli
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from service.domain import Pacing, poll_at
from service.domain.visma_errors import HINT_PRECONDITION_FAILED
from service.visma import VismaClient
from tests.servers import bind_loopback, serving, url_of
from tests.stack import Stack, running_stack

pytestmark = pytest.mark.e2e


def test_poll_at_reads_a_job_without_webhook_after_a_few_seconds() -> None:
    from datetime import UTC, datetime, timedelta

    now = datetime(2026, 12, 2, 13, 0, tzinfo=UTC)
    pacing = Pacing(poll_after_seconds=600)
    assert poll_at(pacing, accepted_at=now, next_check=None) == now + timedelta(seconds=600)
    quick = poll_at(pacing, accepted_at=now, next_check=None, notify=False)
    assert (
        quick
        == now + timedelta(seconds=pacing.unnotified_first_read_seconds)
        < now + (timedelta(seconds=10))
    )


@pytest.fixture(name="stack")
async def fixture_stack(clean_database: str):
    async with running_stack(clean_database, POLL_AFTER_SECONDS=600) as stack:
        yield stack


async def test_a_job_without_webhook_is_polled_from_the_start(stack: Stack) -> None:
    started = time.monotonic()
    job = await stack.submit(body={"name": "Quiet AS"}, notify=False)
    assert job["state"] == "accepted"
    ended = await stack.wait_for_end(job["id"], timeout=20)
    assert ended["state"] == "succeeded"
    assert ended["resolvedBy"] == "poll"
    assert time.monotonic() - started < 15  # not POLL_AFTER_SECONDS (600 s)


async def test_if_match_412_fails_the_job_with_a_hint_and_result_etag_follows_updates(
    stack: Stack,
) -> None:
    read = await stack.wait_for_end(
        (await stack.submit(method="GET", path="/v1/customer/C1"))["id"]
    )
    first = read["resultEtag"]
    assert read["state"] == "succeeded" and first

    updated = await stack.wait_for_end(
        (await stack.submit(method="PUT", path="/v1/customer/C1", body={}, ifMatch=first))["id"]
    )
    assert updated["state"] == "succeeded" and updated["httpStatus"] == 204
    assert updated["resultEtag"] and updated["resultEtag"] != first

    stale = await stack.wait_for_end(
        (await stack.submit(method="PUT", path="/v1/customer/C1", body={}, ifMatch=first))["id"]
    )
    assert stale["state"] == "failed"
    assert stale["httpStatus"] == 412
    assert stale["hint"] == HINT_PRECONDITION_FAILED
    # The record's current version, for the resubmission the hint asks for.
    again = await stack.wait_for_end(
        (
            await stack.submit(
                method="PUT", path="/v1/customer/C1", body={}, ifMatch=updated["resultEtag"]
            )
        )["id"]
    )
    assert again["state"] == "succeeded"


async def test_rest_answers_are_gzipped_for_clients_that_accept_it(stack: Stack) -> None:
    for n in range(5):
        await stack.submit(body={"name": f"Zip {n}"}, tags={"batch": "zip"})
    auth = stack.api.headers["authorization"]
    async with httpx.AsyncClient(base_url=stack.service_url) as client:
        listed = await client.get(
            "/api/v1/jobs",
            headers={"Authorization": auth, "Accept-Encoding": "gzip"},
        )
        plain = await client.get(
            "/api/v1/jobs", headers={"Authorization": auth, "Accept-Encoding": "identity"}
        )
    assert listed.headers["content-encoding"] == "gzip"
    assert listed.json()["metadata"]["totalCount"] == 5  # httpx decoded it
    assert "content-encoding" not in plain.headers


async def test_the_visma_client_asks_for_compressed_answers(stack: Stack) -> None:
    await stack.wait_for_end((await stack.submit(body={"name": "Br AS"}))["id"])
    async with httpx.AsyncClient(base_url=stack.simulator_url) as client:
        [job] = (await client.get("/_sim/jobs")).json()["items"]
    assert job["request"]["headers"]["accept-encoding"] == "br, gzip, deflate"


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [("br", brotli.compress), ("gzip", gzip.compress), ("deflate", zlib.compress)],
)
async def test_the_visma_client_decodes_each_encoding(encoding: str, compress) -> None:
    state = {"id": "v-1", "status": "Finished", "statusCode": 200}

    async def token(_request: Request) -> Response:
        return JSONResponse({"access_token": "t", "expires_in": 3600})

    async def background(request: Request) -> Response:
        assert "br" in request.headers["accept-encoding"]
        raw = compress(json.dumps(state).encode())
        return Response(
            raw,
            media_type="application/json",
            headers={"Content-Encoding": encoding},
        )

    app = Starlette(
        routes=[
            Route("/connect/token", token, methods=["POST"]),
            Route("/v1/background/{job_id}", background),
        ]
    )
    sock = bind_loopback()
    async with serving(app, sock):
        base = url_of(sock)
        client = VismaClient(
            api_url=base,
            token_url=f"{base}/connect/token",
            client_id="c",
            client_secret="s",
            tenant_ids=["t"],
            scopes="read",
        )
        try:
            assert await client.background_state("v-1") == state
        finally:
            await client.aclose()
