"""`visma-hooks demo`: the whole product against the simulator, on a throw-away database.

It starts the simulator, the service and a team's alert endpoint on loopback ports, submits
jobs that rehearse Visma's outcomes and failure modes under chaos, shows them live until each
ends, lets the simulated status page report trouble, and checks that every job ended as
expected and the signed alerts arrived (exit status 1 if not), so it doubles as a smoke test.
"""

from __future__ import annotations

import asyncio
import base64
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
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from service.app import create_app
from service.settings import Settings
from service.simulator import Outcome, SimulatorConfig, create_simulator_app
from service.terminal import shortened

DEMO_SECRET = "demo-webhook-secret"
DEMO_TOKEN = "demo-api-token"
DEMO_STATUS_TOKEN = "demo-status-token"
# Standard Webhooks secret for the alerts the demo's own sink receives and verifies.
DEMO_SIGNING_SECRET = "whsec_" + base64.b64encode(b"visma-hooks-demo-signing-key!!!").decode()
DEMO_NOISE_WINDOW_SECONDS = 2.0
EXPECTED_ALERTS = ("job.failed", "job.rejected", "component.status", "incident.update")
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
        from service.store import migrate

        await asyncio.to_thread(migrate, database_url)
        async with _stack(database_url) as (api, simulator, sink):
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
            await _status_page_trouble(simulator)
            alerts = await _alerts_received(sink, timeout=timeout)
            inbox = (await api.get("/api/v1/deliveries")).json()["metadata"]["totalCount"]
    jobs_ok = all(_as_expected(scenario, states[job_id]) for scenario, job_id in jobs)
    console.print(f"webhook deliveries stored (Visma and status page): {inbox}")
    console.print(_alerts_table(alerts))
    kinds = {alert["kind"] for alert in alerts}
    alerts_ok = set(EXPECTED_ALERTS) <= kinds
    console.print(
        "[green]every job ended as expected[/green]"
        if jobs_ok
        else "[red]some jobs did not end as expected[/red]"
    )
    console.print(
        "[green]signed alerts arrived for failures, refusals and Visma's own trouble[/green]"
        if alerts_ok
        else f"[red]missing alerts: {', '.join(sorted(set(EXPECTED_ALERTS) - kinds))}[/red]"
    )
    return jobs_ok and alerts_ok


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


HINT_WIDTH = 90
"""A hint's first words in the demo's table (the whole of it: `visma-hooks job ID`)."""


def _table(jobs: list[tuple[Scenario, str]], states: dict[str, dict[str, Any]]) -> Table:
    table = Table(title="visma-hooks demo")
    # Cells wrap between words; only a word longer than its column is folded.
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
            shortened(job["hint"] or "", HINT_WIDTH),
        )
    return table


async def _status_page_trouble(simulator: Any) -> None:
    """Visma's status page reports trouble on the ERP API, then recovery."""
    page = simulator.statuspage
    await page.set_component("Visma.net ERP API", "degraded_performance")
    incident = await page.set_incident(
        "Slow background API processing",
        "investigating",
        body="Background jobs take longer than usual to finish.",
        components=["Visma.net ERP API"],
        component_status="degraded_performance",
    )
    await page.set_incident(
        "Slow background API processing",
        "resolved",
        incident_id=incident.payload["incident"]["id"],
        body="Processing times are back to normal.",
        components=["Visma.net ERP API"],
        component_status="operational",
    )


async def _alerts_received(sink: list[dict[str, Any]], *, timeout: float) -> list[dict[str, Any]]:
    """The alerts, once the expected kinds are in and nothing new came for a noise window."""
    deadline = time.monotonic() + timeout
    seen, quiet_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        if len(sink) != seen:
            seen, quiet_since = len(sink), time.monotonic()
        expected_in = set(EXPECTED_ALERTS) <= {alert["kind"] for alert in sink}
        # Held alerts (flaps, bursts) leave when their window closes: wait one window longer.
        if expected_in and time.monotonic() - quiet_since > DEMO_NOISE_WINDOW_SECONDS + 0.5:
            break
        await asyncio.sleep(0.1)
    return list(sink)


def _alerts_table(alerts: list[dict[str, Any]]) -> Table:
    table = Table(title="alerts received (signature verified)")
    table.add_column("kind")
    table.add_column("summary", overflow="fold")
    for alert in alerts:
        table.add_row(alert["kind"], alert["summary"])
    return table


def _alert_sink(received: list[dict[str, Any]]) -> Starlette:
    """A team's alert endpoint: verifies the Standard Webhooks signature, keeps the alert."""
    verifier = Webhook(DEMO_SIGNING_SECRET)

    async def receive(request: Request) -> Response:
        body = await request.body()
        try:
            alert = verifier.verify(body, dict(request.headers))
        except WebhookVerificationError:
            return Response(status_code=401)
        received.append(alert)
        return Response(status_code=204)

    return Starlette(routes=[Route("/alerts", receive, methods=["POST"])])


def _as_expected(scenario: Scenario, job: dict[str, Any]) -> bool:
    return job["state"] == scenario.expect_state and (
        scenario.expect_resolved_by is None or job["resolvedBy"] == scenario.expect_resolved_by
    )


@contextlib.asynccontextmanager
async def _stack(
    database_url: str,
) -> AsyncIterator[tuple[httpx.AsyncClient, Any, list[dict[str, Any]]]]:
    service_sock, simulator_sock, sink_sock = _bind(), _bind(), _bind()
    service_url, simulator_url = _url(service_sock), _url(simulator_sock)
    received: list[dict[str, Any]] = []
    simulator_app = create_simulator_app(
        SimulatorConfig(
            webhook_url=f"{service_url}/webhooks/visma",
            webhook_secret=DEMO_SECRET,
            status_webhook_url=f"{service_url}/webhooks/status/{DEMO_STATUS_TOKEN}",
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
        STATUS_WEBHOOK_TOKEN=DEMO_STATUS_TOKEN,
        ALERT_WEBHOOK_URLS=f"{_url(sink_sock)}/alerts",
        ALERT_SIGNING_SECRET=DEMO_SIGNING_SECRET,
        ALERT_BURST_WINDOW_SECONDS=DEMO_NOISE_WINDOW_SECONDS,
        ALERT_FLAP_WINDOW_SECONDS=DEMO_NOISE_WINDOW_SECONDS,
    )
    async with (
        _serving(_alert_sink(received), sink_sock),
        _serving(simulator_app, simulator_sock),
        _serving(create_app(settings), service_sock),
        httpx.AsyncClient(
            base_url=service_url, headers={"Authorization": f"Bearer {DEMO_TOKEN}"}, timeout=30
        ) as api,
    ):
        yield api, simulator_app.state.simulator, received


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
