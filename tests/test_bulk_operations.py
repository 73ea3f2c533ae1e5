"""Bulk operations from outside: a window of deliveries replayed, and a resend that a replica
dies in the middle of, taken over by another, with no job re-sent twice."""

from __future__ import annotations

import asyncio
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from service import store
from service.app import visma_client
from service.flows import OperationRun, run_next_operation
from service.flows import bulk as bulk_flow
from service.simulator import SimulatorConfig, create_simulator_app
from service.store import create_engine, create_sessionmaker, is_sqlite
from tests.conftest import API_TOKEN, make_settings
from tests.factories import failed_issue
from tests.harness import in_process, signed_delivery
from tests.servers import bind_loopback, serving
from tests.test_e2e_replicas import free_port, start_replica, wait_healthy

pytestmark = pytest.mark.e2e


async def test_replaying_a_window_of_deliveries_is_one_operation(clean_database: str) -> None:
    async with in_process(clean_database, VISMA_TENANT_ID="1234,5678") as harness:
        client = harness.client
        since = datetime.now(UTC) - timedelta(seconds=1)
        for tenant in ("1234", "1234", "5678"):
            body, headers = signed_delivery(extra={"x-vwd-tenant-id": tenant})
            response = await client.post("/webhooks/visma", content=body, headers=headers)
            assert response.status_code == 200, response.text

        # Bad windows are refused, saying why.
        for bad, says in (
            ({}, "since"),
            ({"since": "yesterday"}, "since"),
            ({"since": since.isoformat(), "until": since.isoformat()}, "before"),
            ({"since": since.isoformat(), "colour": "red"}, "colour"),
            ([], "object"),
        ):
            refused = await client.post("/api/v1/deliveries/replay", json=bad)
            assert refused.status_code == 400, (bad, refused.text)
            assert says in refused.json()["detail"]

        started = await client.post(
            "/api/v1/deliveries/replay", json={"since": since.isoformat(), "tenant": "1234"}
        )
        assert started.status_code == 202, started.text
        assert started.json()["kind"] == "replay" and started.json()["total"] == 2
        assert await harness.resources.operations.run_once() == 1
        done = (await client.get(started.headers["location"])).json()
        assert (done["state"], done["done"], done["failed"]) == ("done", 2, 0)

        every = await client.post("/api/v1/deliveries/replay", json={"since": since.isoformat()})
        assert every.json()["total"] == 3
        assert await harness.resources.operations.run_once() == 1
        assert (await client.get(every.headers["location"])).json()["done"] == 3

        # A window with nothing in it is done at once.
        later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        empty = await client.post(
            "/api/v1/deliveries/replay",
            json={"since": later, "until": (datetime.now(UTC) + timedelta(hours=2)).isoformat()},
        )
        assert empty.json()["state"] == "done" and empty.json()["total"] == 0


JOBS = 250


async def test_a_resend_taken_over_after_its_replica_died_resends_each_job_once(
    clean_database: str,
) -> None:
    issue_id = await failed_issue(clean_database, JOBS)
    engines = [create_engine(clean_database) for _ in range(2)]
    sessions = [create_sessionmaker(engine) for engine in engines]
    visma = visma_client(make_settings(clean_database))  # a resend never calls Visma
    try:
        async with sessions[0].begin() as session:
            operation_id = (await bulk_flow.start_resend(session, issue_id)).id
        lease = 0.5
        dying = OperationRun(owner="replica-a", lease_seconds=lease)
        # Replica A claims the operation, does one step, and dies (its task is cancelled
        # before the next: nothing tells the database).
        original = bulk_flow._resend_step
        steps = 0

        async def one_step_then_die(*args: object, **kwargs: object) -> bool:
            nonlocal steps
            steps += 1
            if steps > 1:
                raise asyncio.CancelledError
            return await original(*args, **kwargs)  # type: ignore[arg-type]

        bulk_flow._resend_step = one_step_then_die  # type: ignore[assignment]
        try:
            with pytest.raises(asyncio.CancelledError):
                await run_next_operation(sessions[0], visma, dying)
        finally:
            bulk_flow._resend_step = original
        async with sessions[1].begin() as session:
            halfway = await store.get_operation(session, operation_id)
            assert halfway is not None and halfway.done == bulk_flow.RESEND_STEP
            assert halfway.state == "running"
        # Replica B finds it leased until A's lease runs out, then takes it and finishes.
        survivor = OperationRun(owner="replica-b", lease_seconds=30)
        assert not await run_next_operation(sessions[1], visma, survivor)
        await asyncio.sleep(lease + 0.1)
        assert await run_next_operation(sessions[1], visma, survivor)
        async with sessions[1].begin() as session:
            done = await store.get_operation(session, operation_id)
            assert done is not None and (done.state, done.done) == ("done", JOBS)
            old = (
                (await session.execute(select(store.Job).where(store.Job.issue_id == issue_id)))
                .scalars()
                .all()
            )
            assert len(old) == JOBS and all(job.resent_as for job in old)
            new = (
                await session.execute(
                    select(store.Job.resent_from, func.count())
                    .where(store.Job.resent_from.is_not(None))
                    .group_by(store.Job.resent_from)
                )
            ).all()
            assert len(new) == JOBS and {count for _, count in new} == {1}
            assert {job.resent_as for job in old} == {
                j
                for (j,) in (
                    await session.execute(
                        select(store.Job.id).where(store.Job.resent_from.is_not(None))
                    )
                ).all()
            }
            pending = (
                await session.execute(
                    select(func.count()).where(
                        store.Job.resent_from.is_not(None), store.Job.send_pending.is_(True)
                    )
                )
            ).scalar_one()
            assert pending == JOBS  # recorded, to be sent as the company's budget allows
    finally:
        await visma.aclose()
        for engine in engines:
            await engine.dispose()


KILLED_JOBS = 600


async def test_two_replicas_resend_each_job_once_when_the_running_one_is_killed(
    clean_database: str, tmp_path: Path
) -> None:
    if is_sqlite(clean_database):
        pytest.skip("replicas share a PostgreSQL database")
    issue_id = await failed_issue(clean_database, KILLED_JOBS)
    sock = bind_loopback()
    simulator = create_simulator_app(SimulatorConfig(webhook_url=None))
    paced = {"OPERATION_ITEMS_PER_SECOND": "100", "OPERATION_LEASE_SECONDS": "2"}
    async with serving(simulator, sock) as sim_url:
        ports = [free_port(), free_port()]
        first = start_replica(
            clean_database, sim_url, ports[0], tmp_path / "a.log", extra_env=paced
        )
        replicas = [first]
        urls = [f"http://127.0.0.1:{port}" for port in ports]
        try:
            await wait_healthy(urls[0], first)
            async with httpx.AsyncClient(
                headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=30
            ) as api:
                started = await api.post(f"{urls[0]}/api/v1/issues/{issue_id}/resend")
                assert started.status_code == 202, started.text
                operation_url = started.headers["location"]
                second = start_replica(
                    clean_database, sim_url, ports[1], tmp_path / "b.log", extra_env=paced
                )
                replicas.append(second)
                await wait_healthy(urls[1], second)
                # Kill the replica running it once it is some way in.
                deadline = time.monotonic() + 30
                while (await api.get(f"{urls[1]}{operation_url}")).json()["done"] < 200:
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.02)
                first.send_signal(signal.SIGKILL)
                first.wait()
                at_kill = (await api.get(f"{urls[1]}{operation_url}")).json()
                assert at_kill["done"] < KILLED_JOBS, "done before the kill: not mid-run"
                deadline = time.monotonic() + 60
                while (done := (await api.get(f"{urls[1]}{operation_url}")).json())[
                    "state"
                ] != "done":
                    assert time.monotonic() < deadline, done
                    await asyncio.sleep(0.1)
        finally:
            for process in replicas:
                if process.poll() is None:
                    process.terminate()
                    process.wait(timeout=10)
    assert (done["done"], done["failed"], done["total"]) == (KILLED_JOBS, 0, KILLED_JOBS)
    engine = create_engine(clean_database)
    try:
        async with create_sessionmaker(engine).begin() as session:
            old = (
                (await session.execute(select(store.Job).where(store.Job.issue_id == issue_id)))
                .scalars()
                .all()
            )
            per_old = (
                await session.execute(
                    select(store.Job.resent_from, func.count())
                    .where(store.Job.resent_from.is_not(None))
                    .group_by(store.Job.resent_from)
                )
            ).all()
    finally:
        await engine.dispose()
    assert all(job.resent_as for job in old)
    assert len(per_old) == KILLED_JOBS and {count for _, count in per_old} == {1}
