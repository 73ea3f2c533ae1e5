"""The simulator's companies and hourly budgets, over real HTTP: per-tenant tokens, a job
readable only by its own company, and X-RateLimit-* from a per-company fixed window."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Route

from service.simulator import SimulatorConfig, SimulatorState, create_simulator_app
from tests.test_simulator import Receiver, serve, token_form

OTHER = "sim-tenant-2"
BACKGROUND = {"erp-api-background": "subscription:vh-job-id=7"}


@pytest.fixture(name="receiver")
async def fixture_receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    app = Starlette(routes=[Route("/hooks", receiver.receive, methods=["POST"])])
    async with serve(app) as url:
        receiver.url = f"{url}/hooks"
        yield receiver


@dataclass
class Companies:
    state: SimulatorState
    first: httpx.AsyncClient
    """Carries a token for `sim-tenant`."""
    second: httpx.AsyncClient
    """Carries a token for `sim-tenant-2`."""
    control: httpx.AsyncClient


@contextlib.asynccontextmanager
async def two_companies(
    receiver: Receiver | None = None, **config: object
) -> AsyncIterator[Companies]:
    settings = SimulatorConfig(
        other_tenant_ids=[OTHER],
        webhook_url=receiver.url if receiver else None,
        retry_base_seconds=0.01,
        job_duration_seconds=0.01,
        **config,  # type: ignore[arg-type]
    )
    app = create_simulator_app(settings)
    async with (
        serve(app) as url,
        httpx.AsyncClient(base_url=url) as first,
        httpx.AsyncClient(base_url=url) as second,
        httpx.AsyncClient(base_url=url) as control,
    ):
        for client, tenant in ((first, settings.tenant_id), (second, OTHER)):
            token = await client.post("/connect/token", data=token_form(settings, tenant_id=tenant))
            assert token.status_code == 200, token.text
            client.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
        yield Companies(app.state.simulator, first, second, control)


async def test_read_state_answers_403_to_another_companys_token() -> None:
    async with two_companies() as sim:
        submitted = await sim.second.post("/v1/customer", json={"name": "Acme"}, headers=BACKGROUND)
        job_id = submitted.json()["id"]
        own = await sim.second.get(f"/v1/background/{job_id}")
        foreign = await sim.first.get(f"/v1/background/{job_id}")
        foreign_content = await sim.first.get(f"/v1/background/{job_id}/content")
        requests = (await sim.control.get("/_sim/requests")).json()["items"]

    assert submitted.status_code == 202
    assert own.status_code == 200
    assert foreign.status_code == 403
    assert foreign_content.status_code == 403
    assert sim.state.jobs[job_id].tenant == OTHER
    assert [r["tenant"] for r in requests if r["kind"] != "token"] == [
        OTHER,
        OTHER,
        "sim-tenant",
        "sim-tenant",
    ]


async def test_token_endpoint_refuses_a_company_not_configured() -> None:
    async with two_companies() as sim:
        config = sim.state.config
        refused = await sim.control.post(
            "/connect/token", data=token_form(config, tenant_id="someone-else")
        )
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_request"


async def test_webhook_names_the_company_whose_job_it_is(receiver: Receiver) -> None:
    async with two_companies(receiver) as sim:
        await sim.second.post("/v1/customer", json={"name": "Acme"}, headers=BACKGROUND)
        await sim.state.wait_until(lambda: len(receiver.deliveries) == 1)
    assert receiver.deliveries[0].headers["x-vwd-tenant-id"] == OTHER


async def test_budget_is_per_company_announced_on_every_answer_and_resets() -> None:
    async with two_companies(rate_budget=3, rate_budget_window_seconds=2) as sim:
        started = time.monotonic()
        first = [await sim.first.get("/v1/customer") for _ in range(3)]
        refused = await sim.first.get("/v1/customer")
        other = await sim.second.get("/v1/customer")
        wait = float(refused.headers["retry-after"])
        await asyncio.sleep(max(0.0, started + wait - time.monotonic()))
        await sim.state.wait_until(lambda: time.monotonic() >= started + 2, timeout=5)
        again = await sim.first.get("/v1/customer")

    assert [r.status_code for r in first] == [200, 200, 200]
    assert [r.headers["x-ratelimit-remaining"] for r in first] == ["2", "1", "0"]
    assert all(r.headers["x-ratelimit-limit"] == "3" for r in first)
    # Seconds left, rounded down: a 2 s window just begun announces 1.
    assert all(0 <= int(r.headers["x-ratelimit-reset"]) <= 1 for r in first)
    assert refused.status_code == 429
    assert 0 <= wait <= 1
    assert refused.headers["x-ratelimit-remaining"] == "0"
    assert other.status_code == 200  # one company's spent budget is not another's
    assert other.headers["x-ratelimit-remaining"] == "2"
    assert again.status_code == 200
    assert again.headers["x-ratelimit-remaining"] == "2"


@pytest.mark.parametrize(("rounding", "admitted"), [("down", False), ("up", True)])
async def test_a_client_sending_at_the_announced_reset_is_early_when_seconds_round_down(
    rounding: str, admitted: bool
) -> None:
    # The window is 2 s long: rounded down its reset says 1 s, up 2 s. A client that sends
    # exactly when the header says lands a fraction of a second early under "down".
    async with two_companies(
        rate_budget=1, rate_budget_window_seconds=2, announce_rounding=rounding
    ) as sim:
        started = time.monotonic()
        first = await sim.first.get("/v1/customer")
        announced = int(first.headers["x-ratelimit-reset"])
        await asyncio.sleep(max(0.0, started + announced - time.monotonic()))
        at_reset = await sim.first.get("/v1/customer")
        took = time.monotonic() - started

    assert first.status_code == 200
    assert announced == (1 if rounding == "down" else 2)
    if took < 2:  # only a request that really was early can show it
        assert (at_reset.status_code == 200) is admitted
    else:
        assert at_reset.status_code == 200


async def test_chaos_spends_a_companys_budget() -> None:
    async with two_companies(rate_budget=1000, rate_budget_window_seconds=300) as sim:
        spent = await sim.control.post("/_sim/budgets/sim-tenant/spend")
        refused = await sim.first.post("/v1/customer", json={"name": "A"}, headers=BACKGROUND)
        other = await sim.second.post("/v1/customer", json={"name": "B"}, headers=BACKGROUND)
        unknown = await sim.control.post("/_sim/budgets/nobody/spend")
        budgets = (await sim.control.get("/_sim/budgets")).json()["budgets"]

    assert spent.status_code == 200
    assert spent.json()["remaining"] == 0
    assert refused.status_code == 429
    assert 290 <= int(refused.headers["retry-after"]) <= 300
    assert other.status_code == 202
    assert len(sim.state.jobs) == 1  # a 429'd call makes no job
    assert unknown.status_code == 404
    assert budgets["sim-tenant"]["remaining"] == 0
    assert budgets[OTHER]["remaining"] == 999


async def test_spend_without_a_budget_is_refused() -> None:
    async with two_companies() as sim:
        answer = await sim.control.post("/_sim/budgets/sim-tenant/spend")
    assert answer.status_code == 400
    assert "rate_budget" in answer.json()["detail"]
