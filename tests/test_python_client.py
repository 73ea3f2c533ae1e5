"""The Python client (clients/python) against a real service and simulator over loopback:
submit, wait, page, typed errors, safe retries, verified callbacks, and that it cannot drift
from the service's OpenAPI document or pull in the service's dependencies."""

from __future__ import annotations

import ast
import asyncio
import contextlib
import importlib.util
import os
import sys
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from visma_hooks_client import (
    AsyncClient,
    Client,
    Conflict,
    Forbidden,
    ForgedCallback,
    Job,
    NotFound,
    ServiceUnavailable,
    Unauthorized,
    job_json,
    verify_callback,
)
from visma_hooks_client.models import json_names

from service.simulator import Outcome
from tests.conftest import API_TOKEN
from tests.servers import bind_loopback, serving, url_of
from tests.sink import SIGNING_SECRET, Sink
from tests.stack import Stack, running_stack

pytestmark = pytest.mark.e2e

CLIENT = Path(__file__).parent.parent / "clients" / "python"
READ_TOKEN = "client-test-read-token"


def client_of(stack: Stack, token: str = API_TOKEN) -> AsyncClient:
    return AsyncClient(stack.service_url, token)


async def test_submit_and_wait_until_the_job_ends(clean_database: str) -> None:
    async with running_stack(clean_database) as stack, client_of(stack) as client:
        job = await client.submit("POST", "/v1/customer", {"name": "Acme AS"}, tags={"o": "1"})
        assert job.state == "accepted" and job.tags == {"o": "1"}
        ended = await client.wait(job.id, timeout=15)
        again = await client.submit_and_wait("POST", "/v1/customer", {"name": "B"}, timeout=15)
    assert ended.finished and ended.state == "succeeded"
    assert ended.events is not None and ended.events[0].kind == "submitted"
    assert again.state == "succeeded"


async def test_the_blocking_client_does_the_same(clean_database: str) -> None:
    async with running_stack(clean_database) as stack:

        def use() -> Job:
            with Client(stack.service_url, API_TOKEN) as client:
                job = client.submit("POST", "/v1/customer", {"name": "Acme AS"}, retry=True)
                return client.wait(job.id, timeout=15)

        ended = await asyncio.to_thread(use)  # the servers run on this loop meanwhile
    assert ended.state == "succeeded" and ended.idempotency_key is not None


async def test_wait_returns_the_job_as_it_stands_when_the_timeout_passes(
    clean_database: str,
) -> None:
    async with running_stack(clean_database, POLL_AFTER_SECONDS=300) as stack:
        stack.simulator.script(Outcome(webhook="drop"))
        async with client_of(stack) as client:
            job = await client.submit("POST", "/v1/customer")
            waited = await client.wait(job.id, timeout=1.5)
    assert waited.state == "accepted" and not waited.finished


async def test_jobs_walks_every_page(clean_database: str) -> None:
    async with running_stack(clean_database) as stack, client_of(stack) as client:
        results = await client.submit_batch(
            [job_json("POST", "/v1/customer", {"n": n}, tags={"run": "paging"}) for n in range(250)]
        )
        assert [r.status for r in results] == [201] * 250
        listed = [job async for job in client.jobs(tags={"run": "paging"}, page_size=100)]
    assert len(listed) == 250
    assert {job.id for job in listed} == {r.job.id for r in results if r.job is not None}


async def test_errors_are_typed_and_carry_the_services_answer(clean_database: str) -> None:
    async with running_stack(clean_database, API_READ_TOKENS=[READ_TOKEN]) as stack:
        async with client_of(stack, "not-a-token") as stranger:
            with pytest.raises(Unauthorized) as unauthorized:
                await stranger.get("anything")
        async with client_of(stack, READ_TOKEN) as reader:
            with pytest.raises(Forbidden):
                await reader.submit("POST", "/v1/customer")
        async with client_of(stack) as client:
            with pytest.raises(NotFound) as missing:
                await client.get("no-such-job")
            await client.submit("POST", "/v1/customer", {"n": 1}, idempotency_key="k-1")
            with pytest.raises(Conflict) as reused:
                await client.submit("POST", "/v1/customer", {"n": 2}, idempotency_key="k-1")
    assert unauthorized.value.status == 401
    assert missing.value.status == 404 and "no-such-job" in missing.value.detail
    assert reused.value.status == 422 and reused.value.code == "idempotency_key_reused"


async def test_a_callback_verifies_and_a_forged_one_does_not(
    clean_database: str, sink: Sink
) -> None:
    settings = {
        "CALLBACK_SIGNING_SECRET": SIGNING_SECRET,
        "CALLBACK_ALLOWED_HOSTS": ["127.0.0.1"],
        "ALERT_POLL_SECONDS": 0.05,
    }
    async with running_stack(clean_database, **settings) as stack, client_of(stack) as client:
        job = await client.submit("POST", "/v1/customer", callback_url=f"{sink.url}/hook/cb")
        [hit] = await sink.wait_for("/hook/cb", 1)
    verified = verify_callback(hit.headers, hit.body, SIGNING_SECRET)
    assert verified["id"] == job.id and verified["state"] == "succeeded"
    forged = hit.body.replace(b"succeeded", b"failed")
    with pytest.raises(ForgedCallback):
        verify_callback(hit.headers, forged, SIGNING_SECRET)


@contextlib.asynccontextmanager
async def flaky_service(fail: int) -> AsyncIterator[tuple[str, list[Request]]]:
    """A server that answers 503 `fail` times, then as the service would."""
    seen: list[Request] = []

    async def answer(request: Request) -> Response:
        seen.append(request)
        if len(seen) <= fail:
            return JSONResponse({"error": "unavailable", "detail": "db down"}, status_code=503)
        return JSONResponse(JOB_JSON, status_code=201 if request.method == "POST" else 200)

    app = Starlette(routes=[Route("/api/v1/jobs{rest:path}", answer, methods=["GET", "POST"])])
    sock = bind_loopback()
    async with serving(app, sock):
        yield url_of(sock), seen


JOB_JSON = {
    "id": "j-1",
    "state": "accepted",
    "method": "POST",
    "path": "/v1/customer",
    "notify": True,
    "submittedAt": "2026-12-07T10:00:00+00:00",
    "lastModifiedAt": "2026-12-07T10:00:00+00:00",
}


async def test_reads_are_retried_on_503_and_submissions_only_with_a_key() -> None:
    async with flaky_service(fail=2) as (url, seen), AsyncClient(url, API_TOKEN) as client:
        assert (await client.get("j-1")).id == "j-1"
        assert len(seen) == 3  # two 503s, then the answer
    async with flaky_service(fail=1) as (url, seen), AsyncClient(url, API_TOKEN) as client:
        with pytest.raises(ServiceUnavailable):
            await client.submit("POST", "/v1/customer")  # no key: never sent twice
        assert len(seen) == 1
    async with flaky_service(fail=1) as (url, seen), AsyncClient(url, API_TOKEN) as client:
        await client.submit("POST", "/v1/customer", retry=True)  # a key made up: safe
        keys = {request.headers["idempotency-key"] for request in seen}
        assert len(seen) == 2 and len(keys) == 1


async def test_the_models_mirror_the_services_openapi(clean_database: str) -> None:
    async with running_stack(clean_database) as stack:
        document = (await stack.api.get("/openapi.json")).json()
    schemas = document["components"]["schemas"]
    from visma_hooks_client import models

    assert json_names(models.Job) - {"etag"} == set(schemas["JobDetail"]["properties"])
    assert json_names(models.JobError) == set(schemas["JobError"]["properties"])
    assert json_names(models.Event) == set(schemas["TimelineEntry"]["properties"])
    assert json_names(models.JobResult) == set(schemas["JobResult"]["properties"])


def test_the_client_needs_only_httpx_and_standardwebhooks() -> None:
    project = tomllib.loads((CLIENT / "pyproject.toml").read_text())["project"]
    assert project["name"] == "visma-hooks-client"
    assert sorted(d.split(">")[0].split("=")[0] for d in project["dependencies"]) == [
        "httpx",
        "standardwebhooks",
    ]
    imported: set[str] = set()
    for source in (CLIENT / "src" / "visma_hooks_client").glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                imported.add(node.module.split(".")[0])
    outside = imported - set(sys.stdlib_module_names) - {"__future__"}
    assert outside == {"httpx", "standardwebhooks", "visma_hooks_client"}
    assert (CLIENT / "src" / "visma_hooks_client" / "py.typed").exists()


def test_the_blocking_client_is_written_from_the_async_one() -> None:
    spec = importlib.util.spec_from_file_location("unasync", CLIENT / "unasync.py")
    assert spec is not None and spec.loader is not None
    unasync = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(unasync)
    package = CLIENT / "src" / "visma_hooks_client"
    written = unasync.sync_source((package / "_async.py").read_text())
    assert written == (package / "_sync.py").read_text(), "run clients/python/unasync.py"


async def test_the_example_runs_against_the_service(clean_database: str) -> None:
    async with running_stack(clean_database) as stack:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(CLIENT / "examples" / "submit_and_wait.py"),
            env={
                **os.environ,
                "PYTHONPATH": str(CLIENT / "src"),
                "VISMA_HOOKS_URL": stack.service_url,
                "VISMA_HOOKS_TOKEN": API_TOKEN,
            },
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, err.decode()
    assert ": succeeded" in out.decode()
