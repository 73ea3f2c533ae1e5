"""Safe submission: a request retried with its Idempotency-Key makes one job and one Visma
request, whatever the network did to the first; on both databases, across replicas."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func, select

from service import store
from service.app import create_app
from service.domain import Retention
from service.flows import PurgeSettings, purge, utcnow
from service.store import create_engine, create_sessionmaker, is_sqlite
from tests.conftest import API_TOKEN
from tests.servers import bind_loopback, serving, url_of
from tests.stack import Stack, running_stack

pytestmark = pytest.mark.e2e

JOB = {"method": "POST", "path": "/v1/customer", "body": {"name": "Acme AS"}, "tags": {"o": "1"}}


def submits(stack: Stack) -> list:
    return [r for r in stack.simulator.requests if r.kind == "submit"]


async def post(api: httpx.AsyncClient, key: str | None, job: dict = JOB) -> httpx.Response:
    headers = {} if key is None else {"Idempotency-Key": key}
    return await api.post("/api/v1/jobs", json=job, headers=headers)


async def count_jobs(database_url: str) -> int:
    engine = create_engine(database_url)
    try:
        async with create_sessionmaker(engine).begin() as session:
            return int(
                (await session.execute(select(func.count()).select_from(store.Job))).scalar_one()
            )
    finally:
        await engine.dispose()


async def test_a_repeat_answers_the_same_job_and_sends_nothing(clean_database: str) -> None:
    async with running_stack(clean_database) as stack:
        first = await post(stack.api, "order-1")
        # The same request, its body's keys in another order: the same request.
        again = await post(stack.api, "order-1", JOB | {"body": {"name": "Acme AS"}})
        quoted = await post(stack.api, '"order-1"')  # the draft's structured-field form
        shown = await stack.job(first.json()["id"])

    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    assert again.status_code == 200, again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"] == quoted.json()["id"]
    assert again.headers["location"] == f"/api/v1/jobs/{first.json()['id']}"
    assert shown["idempotencyKey"] == "order-1"
    assert len(submits(stack)) == 1


async def test_the_same_key_with_another_request_is_refused(clean_database: str) -> None:
    async with running_stack(clean_database) as stack:
        first = await post(stack.api, "order-2")
        for changed in (
            JOB | {"body": {"name": "Other AS"}},
            JOB | {"tags": {"o": "2"}},
            JOB | {"notify": False},
            JOB | {"path": "/v1/supplier"},
            JOB | {"ifMatch": '"v1"'},
        ):
            refused = await post(stack.api, "order-2", changed)
            assert refused.status_code == 422, (changed, refused.text)
            assert refused.json()["error"] == "idempotency_key_reused"
        other_key = await post(stack.api, "order-3", JOB | {"body": {"name": "Other AS"}})
    assert first.status_code == 201 and other_key.status_code == 201
    assert len(submits(stack)) == 2


@pytest.mark.parametrize(
    "key", ["", "x" * 256, "tab\there", "ünïcode", '""'], ids=["empty", "long", "ctl", "utf8", "q"]
)
async def test_a_malformed_key_is_a_clear_400_and_makes_no_job(
    clean_database: str, key: str
) -> None:
    async with running_stack(clean_database) as stack:
        refused = await stack.api.post(
            "/api/v1/jobs",
            json=JOB,
            headers={"Idempotency-Key": key.encode()},  # bytes: httpx sends them as they are
        )
    assert refused.status_code == 400, refused.text
    assert "Idempotency-Key" in refused.json()["detail"]
    assert submits(stack) == []
    assert await count_jobs(clean_database) == 0


async def test_a_key_of_255_printable_characters_is_taken(clean_database: str) -> None:
    async with running_stack(clean_database) as stack:
        made = await post(stack.api, "k" * 254 + "~")
    assert made.status_code == 201, made.text


async def test_fifty_concurrent_requests_with_one_key_make_one_job(clean_database: str) -> None:
    async with running_stack(clean_database) as stack:
        answers = await asyncio.gather(*(post(stack.api, "burst") for _ in range(50)))
    statuses = sorted(a.status_code for a in answers)
    made = [a for a in answers if a.status_code in (200, 201)]
    assert statuses.count(201) == 1, statuses
    assert set(statuses) <= {200, 201, 409}, statuses
    assert len({a.json()["id"] for a in made}) == 1
    for busy in (a for a in answers if a.status_code == 409):
        assert busy.json()["error"] == "idempotency_key_in_use"
        assert int(busy.headers["retry-after"]) >= 1
    assert len(submits(stack)) == 1
    assert await count_jobs(clean_database) == 1


async def test_a_repeat_after_a_restart_is_still_recognised(clean_database: str) -> None:
    async with running_stack(clean_database) as stack:
        first = await post(stack.api, "nightly-42")
    async with running_stack(clean_database) as restarted:
        again = await post(restarted.api, "nightly-42")
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert submits(restarted) == []


async def test_keys_belong_to_their_company(clean_database: str) -> None:
    companies = {"chaos": {"other_tenant_ids": ["sim-tenant-2"]}}
    async with running_stack(
        clean_database, VISMA_TENANT_ID="sim-tenant,sim-tenant-2", **companies
    ) as stack:
        first = await post(stack.api, "shared-key", JOB | {"tenant": "sim-tenant"})
        second = await post(stack.api, "shared-key", JOB | {"tenant": "sim-tenant-2"})
    assert (first.status_code, second.status_code) == (201, 201)
    assert first.json()["id"] != second.json()["id"]


async def test_a_key_is_forgotten_after_idempotency_key_days(clean_database: str) -> None:
    async with running_stack(clean_database) as stack:
        first = await post(stack.api, "old-key")
        engine = create_engine(clean_database)
        sessions = create_sessionmaker(engine)
        try:
            retention = Retention(idempotency_days=7)
            kept = await purge(sessions, retention, PurgeSettings(), now=utcnow())
            later = utcnow() + timedelta(days=7, minutes=1)
            gone = await purge(sessions, retention, PurgeSettings(), now=later)
        finally:
            await engine.dispose()
        again = await post(stack.api, "old-key")
        still = await stack.job(first.json()["id"])
    assert kept["idempotency keys"] == 0
    assert gone["idempotency keys"] == 1
    assert again.status_code == 201 and again.json()["id"] != first.json()["id"]
    assert still["idempotencyKey"] == "old-key"  # the job itself stays, and shows its key


@contextlib.asynccontextmanager
async def second_replica(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    """Another service on the same database and simulator, as a second replica is."""
    sock = bind_loopback()
    async with (
        serving(create_app(stack.settings), sock, settings=stack.settings),
        httpx.AsyncClient(
            base_url=url_of(sock), headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=30
        ) as api,
    ):
        yield api


async def test_two_replicas_on_one_database_make_one_job_per_key(clean_database: str) -> None:
    if is_sqlite(clean_database):
        pytest.skip("replicas share a PostgreSQL; SQLite is one process's file")
    async with running_stack(clean_database) as stack, second_replica(stack) as other:
        answers = await asyncio.gather(
            *(post(api, f"replicated-{n % 5}") for n in range(40) for api in (stack.api, other))
        )
    made = [a for a in answers if a.status_code in (200, 201)]
    assert sorted(a.status_code for a in answers).count(201) == 5
    assert all(a.status_code in (200, 201, 409) for a in answers)
    assert len({a.json()["id"] for a in made}) == 5
    assert len(submits(stack)) == 5
    assert await count_jobs(clean_database) == 5
