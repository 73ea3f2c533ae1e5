"""Two `visma-hooks serve` processes on one PostgreSQL share the polling without doubling it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from service.simulator import Outcome, SimulatorConfig, create_simulator_app
from service.store import is_sqlite
from tests.conftest import API_TOKEN, WEBHOOK_SECRET
from tests.servers import bind_loopback, serving

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).parent.parent
JOBS = 200
LEASE_SECONDS = 2


def start_replica(
    database_url: str,
    simulator_url: str,
    port: int,
    log: Path,
    *,
    extra_env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "VISMA_API_URL": simulator_url,
        "VISMA_TOKEN_URL": f"{simulator_url}/connect/token",
        "VISMA_CLIENT_ID": "sim-client",
        "VISMA_CLIENT_SECRET": "sim-secret",
        "VISMA_TENANT_ID": "sim-tenant",
        "VISMA_WEBHOOK_SECRETS": WEBHOOK_SECRET,
        "API_TOKENS": API_TOKEN,
        "POLL_AFTER_SECONDS": "0.5",
        "POLL_LEASE_SECONDS": str(LEASE_SECONDS),
        "VISMA_MAX_REQUESTS_PER_SECOND": "400",
        **(extra_env or {}),
    }
    with log.open("wb") as stderr:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )


async def wait_healthy(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            assert process.poll() is None, f"replica at {url} exited"
            try:
                if (await client.get(f"{url}/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"replica at {url} did not become ready")


@pytest.fixture(name="postgres_url")
def fixture_postgres_url(clean_database: str) -> str:
    if is_sqlite(clean_database):
        pytest.skip(
            "replicas share a PostgreSQL database; SQLite runs the same code in one process"
        )
    return clean_database


@pytest.fixture(name="simulator")
async def fixture_simulator() -> AsyncIterator[tuple[object, str]]:
    sock = bind_loopback()
    app = create_simulator_app(SimulatorConfig(webhook_url=None, job_duration_seconds=0.3))
    async with serving(app, sock) as url:
        yield app.state.simulator, url


def free_port() -> int:
    sock = bind_loopback()
    port: int = sock.getsockname()[1]
    sock.close()
    return port


async def test_two_replicas_resolve_every_job_once_even_when_one_is_killed(
    postgres_url: str, simulator: tuple, tmp_path: Path
) -> None:
    sim, sim_url = simulator
    sim.script(Outcome(kind="success", webhook="drop", times=None))  # every webhook is lost
    ports = [free_port(), free_port()]
    replicas = [
        start_replica(postgres_url, sim_url, port, tmp_path / f"replica-{n}.log")
        for n, port in enumerate(ports)
    ]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        await asyncio.gather(*(wait_healthy(u, p) for u, p in zip(urls, replicas, strict=True)))
        headers = {"Authorization": f"Bearer {API_TOKEN}"}
        async with httpx.AsyncClient(headers=headers, timeout=30) as api:
            # Submit through both replicas, half each.
            answers = await asyncio.gather(
                *(
                    api.post(
                        f"{urls[n % 2]}/api/v1/jobs",
                        json={"method": "POST", "path": "/v1/customer", "body": {"n": n}},
                    )
                    for n in range(JOBS)
                )
            )
            assert all(a.status_code == 201 for a in answers), answers[0].text
            job_ids = [a.json()["id"] for a in answers]
            # Kill one replica mid-run: as soon as it has read a few job states itself.
            victim = f"/{replicas[1].pid}"
            await sim.wait_until(
                lambda: (
                    sum(
                        1
                        for r in sim.requests
                        if r.kind == "state" and (r.client or "").endswith(victim)
                    )
                    >= 10
                ),
                timeout=20,
                interval=0.002,
            )
            replicas[1].send_signal(signal.SIGKILL)
            replicas[1].wait()
            reads_at_kill = sum(1 for r in sim.requests if r.kind == "state")
            assert reads_at_kill < JOBS, "every job was read before the kill: not mid-run"
            deadline = time.monotonic() + 60
            while True:
                listed = await api.get(
                    f"{urls[0]}/api/v1/jobs", params={"state": "succeeded", "pageSize": "1"}
                )
                if listed.json()["metadata"]["totalCount"] == JOBS:
                    break
                assert time.monotonic() < deadline, f"{listed.json()['metadata']} of {JOBS}"
                await asyncio.sleep(0.25)
            jobs = [(await api.get(f"{urls[0]}/api/v1/jobs/{j}")).json() for j in job_ids]
    finally:
        for process in replicas:
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=10)
    assert all(job["resolvedBy"] == "poll" for job in jobs)
    # Both replicas did state reads, and no job's state was read by both within one round.
    reads: dict[str, list[tuple[object, str]]] = defaultdict(list)
    for record in sim.requests:
        if record.path.startswith("/v1/background/") and not record.path.endswith("/content"):
            reads[record.path.rsplit("/", 1)[-1]].append((record.at, record.client))
    assert len({client for job_reads in reads.values() for _, client in job_reads}) == 2
    for visma_id, job_reads in reads.items():
        job_reads.sort(key=lambda read: read[0])
        for (at1, client1), (at2, client2) in zip(job_reads, job_reads[1:], strict=False):
            if client1 != client2:
                assert at2 - at1 >= timedelta(seconds=LEASE_SECONDS) * 0.9, (
                    f"job {visma_id} read by both replicas {at2 - at1} apart"
                )
