"""`visma-hooks demo`: the whole job path against the simulator, on a throw-away database.

It starts the simulator and the service on loopback ports, submits jobs that rehearse Visma's
outcomes and failure modes, shows them live until each ends, and checks that every job ended
as expected (exit status 1 if not), so the demo doubles as a smoke test.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from rich.console import Console
from rich.live import Live
from rich.table import Table
from starlette.types import ASGIApp

from service.app import create_app
from service.settings import Settings
from service.simulator import Outcome, SimulatorConfig, create_simulator_app

DEMO_SECRET = "demo-webhook-secret"
DEMO_TOKEN = "demo-api-token"
TERMINAL = ("succeeded", "failed", "expired", "rejected")


@dataclass(frozen=True)
class Scenario:
    """One rehearsal: what Visma will do, and how the job must end."""

    title: str
    path: str
    outcome: Outcome
    expect_state: str
    expect_resolved_by: str | None = None
    body: dict[str, Any] = field(default_factory=dict)


SCENARIOS = (
    Scenario(
        "customer created",
        "/v1/customer",
        Outcome(kind="success"),
        "succeeded",
        "webhook",
        {"name": "Acme AS"},
    ),
    Scenario(
        "no licence (fault 12027)",
        "/v1/salesorder",
        Outcome(kind="no_license"),
        "failed",
        "webhook",
    ),
    Scenario(
        "invalid field (400)",
        "/v1/customerinvoice",
        Outcome(kind="bad_request", message="'CustomerId' is not valid."),
        "failed",
        "webhook",
    ),
    Scenario("refused at submission", "/v1/supplier", Outcome(kind="reject"), "rejected"),
    Scenario(
        "webhook lost: polled",
        "/v1/journaltransaction",
        Outcome(kind="success", webhook="drop"),
        "succeeded",
        "poll",
    ),
    Scenario(
        "webhook sent twice",
        "/v1/customer",
        Outcome(kind="success", duplicate_webhook=True),
        "succeeded",
        "webhook",
        {"name": "Twice AS"},
    ),
    Scenario(
        "webhook before the 202",
        "/v1/customer",
        Outcome(kind="success", webhook_before_accept=True),
        "succeeded",
        "webhook",
        {"name": "Early AS"},
    ),
    Scenario(
        "invoice release (action 202)",
        "/v1/customerinvoice/1001/action/release",
        Outcome(kind="action_accepted"),
        "succeeded",
        "webhook",
    ),
    Scenario(
        "202 lost: the webhook still finds it",
        "/v1/customer",
        Outcome(kind="success", drop_accept=True),
        "succeeded",
        "webhook",
        {"name": "Lost Reply AS"},
    ),
)
# Visma's everyday trouble, on for the whole run: every job must still end as expected.
CHAOS: dict[str, Any] = {
    "seed": 1,
    "rate_limit_share": 0.15,
    "webhook_duplicate_share": 0.5,
    "webhook_delay_seconds": 0.2,
    "webhook_delay_jitter_seconds": 0.5,
    "webhook_reorder_window_seconds": 0.3,
}


async def run_demo(console: Console, *, timeout: float = 30.0) -> bool:
    """Run every scenario; True when each job ended as expected."""
    with tempfile.TemporaryDirectory(prefix="visma-hooks-demo-") as workdir:
        database_url = f"sqlite:///{Path(workdir) / 'demo.db'}"
        from service.cli import migrate

        await asyncio.to_thread(migrate, database_url)
        async with _stack(database_url) as (api, simulator):
            console.print(
                "chaos: " + ", ".join(f"{k}={v}" for k, v in CHAOS.items() if k != "seed")
            )
            jobs: list[tuple[Scenario, str]] = []
            for scenario in SCENARIOS:
                simulator.script(scenario.outcome)
                answer = await api.post(
                    "/api/v1/jobs",
                    json={
                        "method": "POST",
                        "path": scenario.path,
                        "body": scenario.body,
                        "tags": {"demo": "1"},
                    },
                )
                answer.raise_for_status()
                jobs.append((scenario, answer.json()["id"]))
            states = await _watch(console, api, jobs, timeout=timeout)
            console.print()
            inbox = (await api.get("/api/v1/deliveries")).json()["metadata"]["totalCount"]
    ok = all(_as_expected(scenario, states[job_id]) for scenario, job_id in jobs)
    console.print(f"webhook deliveries stored: {inbox}")
    console.print(
        "[green]every job ended as expected[/green]"
        if ok
        else "[red]some jobs did not end as expected[/red]"
    )
    return ok


async def _watch(
    console: Console, api: httpx.AsyncClient, jobs: list[tuple[Scenario, str]], *, timeout: float
) -> dict[str, dict[str, Any]]:
    states: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    with Live(console=console, auto_refresh=False) as live:
        while True:
            for _, job_id in jobs:
                states[job_id] = (await api.get(f"/api/v1/jobs/{job_id}")).json()
            live.update(_table(jobs, states), refresh=True)
            done = all(states[j]["state"] in TERMINAL for _, j in jobs)
            if done or time.monotonic() > deadline:
                return states
            await asyncio.sleep(0.2)


def _table(jobs: list[tuple[Scenario, str]], states: dict[str, dict[str, Any]]) -> Table:
    table = Table(title="visma-hooks demo")
    for column in ("scenario", "state", "resolved by", "http", "created id / error", "hint"):
        table.add_column(column, overflow="fold")
    for scenario, job_id in jobs:
        job = states[job_id]
        colour = "green" if _as_expected(scenario, job) else "yellow"
        detail = job["createdResourceId"] or (job["error"] or {}).get("message") or ""
        table.add_row(
            scenario.title,
            f"[{colour}]{job['state']}[/{colour}]",
            job["resolvedBy"] or "",
            str(job["httpStatus"] or ""),
            detail,
            (job["hint"] or "")[:60],
        )
    return table


def _as_expected(scenario: Scenario, job: dict[str, Any]) -> bool:
    return job["state"] == scenario.expect_state and (
        scenario.expect_resolved_by is None or job["resolvedBy"] == scenario.expect_resolved_by
    )


@contextlib.asynccontextmanager
async def _stack(database_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    service_sock, simulator_sock = _bind(), _bind()
    service_url, simulator_url = _url(service_sock), _url(simulator_sock)
    simulator_app = create_simulator_app(
        SimulatorConfig(
            webhook_url=f"{service_url}/webhooks/visma",
            webhook_secret=DEMO_SECRET,
            job_duration_seconds=0.3,
            retry_base_seconds=0.2,
        )
    )
    # The demo's own settings only: a developer's .env must not point it at real Visma.
    settings = Settings(
        _env_file=None,
        DATABASE_URL=database_url,
        VISMA_API_URL=simulator_url,
        VISMA_TOKEN_URL=f"{simulator_url}/connect/token",
        VISMA_CLIENT_ID="sim-client",
        VISMA_CLIENT_SECRET="sim-secret",
        VISMA_TENANT_ID="sim-tenant",
        VISMA_WEBHOOK_SECRETS=DEMO_SECRET,
        API_TOKENS=DEMO_TOKEN,
        POLL_AFTER_SECONDS=1.0,
    )
    async with (
        _serving(simulator_app, simulator_sock),
        _serving(create_app(settings), service_sock),
        httpx.AsyncClient(
            base_url=service_url, headers={"Authorization": f"Bearer {DEMO_TOKEN}"}, timeout=30
        ) as api,
    ):
        yield api, simulator_app.state.simulator


@contextlib.asynccontextmanager
async def _serving(app: ASGIApp, sock: socket.socket) -> AsyncIterator[None]:
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            await task
        await asyncio.sleep(0.01)
    try:
        yield
    finally:
        server.should_exit = True
        await task


def _bind() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()
    return f"http://{host}:{port}"
