"""Visma's hourly rate budget end to end: one company's budget spent, with a Retry-After of
several (scaled-down) minutes, holds back only that company's work, and only until it ends."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest

from service import store
from service.simulator import Outcome
from service.store import create_engine, create_sessionmaker
from service.visma.pacing import not_before
from tests.stack import Stack, running_stack

pytestmark = pytest.mark.e2e

FIRST, SECOND = "sim-tenant", "sim-tenant-2"
WINDOW_SECONDS = 10.0
"""The simulator's budget window: an hour scaled down, so the Retry-After is several seconds."""
COMPANIES = {
    "chaos": {
        "other_tenant_ids": [SECOND],
        "rate_budget": 1000,
        "rate_budget_window_seconds": WINDOW_SECONDS,
    },
    "VISMA_TENANT_ID": f"{FIRST},{SECOND}",
    "POLL_AFTER_SECONDS": 1,
}


async def timed_submit(stack: Stack, **job: object) -> tuple[dict, float]:
    started = time.monotonic()
    data = await stack.submit(**job)
    return data, time.monotonic() - started


def requests_of(stack: Stack, tenant: str) -> list:
    return [r for r in stack.simulator.requests if r.tenant == tenant and r.kind != "token"]


async def test_a_spent_budget_parks_only_its_companys_work_until_the_window_ends(
    clean_database: str,
) -> None:
    async with running_stack(clean_database, **COMPANIES) as stack:
        spent = await stack.api.post(f"{stack.simulator_url}/_sim/budgets/{FIRST}/spend")
        assert spent.status_code == 200, spent.text
        window_ends = datetime.fromisoformat(spent.json()["resetAt"])
        latencies: list[float] = []

        # The first request for the spent company learns of the budget from Visma's 429 ...
        first, took = await timed_submit(stack, body={"n": 0})
        latencies.append(took)
        assert first["state"] == "submitted" and first["tenant"] == FIRST
        [deferred] = [e for e in first["events"] if e["kind"] == "send_deferred"]
        assert deferred["source"] == "visma"
        assert WINDOW_SECONDS / 2 <= deferred["detail"]["waitSeconds"] <= not_before(WINDOW_SECONDS)
        # ... and the next ones wait without asking: the company's budget is known to be spent.
        parked = [first]
        for n in range(1, 4):
            job, took = await timed_submit(stack, body={"n": n})
            latencies.append(took)
            assert job["state"] == "submitted"
            assert [e["source"] for e in job["events"] if e["kind"] == "send_deferred"] == [
                "budget"
            ]
            parked.append(job)

        # The other company's jobs go on meanwhile, and resolve before the window ends.
        others = []
        for n in range(3):
            job, took = await timed_submit(stack, body={"n": n}, tenant=SECOND)
            latencies.append(took)
            others.append(job)
        ended_others = [await stack.wait_for_end(job["id"]) for job in others]
        assert [job["state"] for job in ended_others] == ["succeeded"] * 3
        assert datetime.now(UTC) < window_ends, "the window ended too soon to prove anything"

        ready = (await stack.api.get("/readyz")).json()
        budgets = {b["tenant"]: b for b in ready["rateBudgets"]}
        assert budgets[FIRST]["remaining"] == 0 and budgets[FIRST]["pausedSeconds"] > 0
        assert budgets[SECOND]["limit"] == 1000 and budgets[SECOND]["remaining"] > 900

        # Every parked job is sent once the window has ended, and resolves.
        ended = [await stack.wait_for_end(job["id"], timeout=WINDOW_SECONDS + 15) for job in parked]
        assert [job["state"] for job in ended] == ["succeeded"] * 4

    sent = requests_of(stack, FIRST)
    before_reset = [r for r in sent if r.at < window_ends]
    # Only the one request that got the 429 went out for that company while it was spent.
    assert [(r.kind, r.status) for r in before_reset] == [("submit", 429)]
    # The parked jobs went after the window ended, not at the instant its (rounded-down)
    # reset named, which would have earned another 429 and another whole window's wait.
    assert [(r.kind, r.status) for r in sent if r.at >= window_ends and r.status == 429] == []
    accepted = [r for r in sent if r.kind == "submit" and r.status == 202]
    assert len(accepted) == 4  # each parked job sent exactly once
    # Answered without waiting for the budget: a wait would have taken most of the window.
    assert max(latencies) < WINDOW_SECONDS / 4, latencies


async def test_shutdown_is_not_held_up_by_a_companys_wait(clean_database: str) -> None:
    stack_cm = running_stack(clean_database, **COMPANIES)
    stack = await stack_cm.__aenter__()
    try:
        stack.simulator.config.rate_budget_window_seconds = 600
        await stack.api.post(f"{stack.simulator_url}/_sim/budgets/{FIRST}/spend")
        parked = [(await timed_submit(stack, body={"n": n}))[0] for n in range(3)]
        assert {job["state"] for job in parked} == {"submitted"}
    finally:
        started = time.monotonic()
        await stack_cm.__aexit__(None, None, None)
        stopped_in = time.monotonic() - started
    # The parked jobs wait 600 s; shutting down does not wait for them.
    assert stopped_in < stack.simulator.config.rate_budget_window_seconds / 10
    assert len([r for r in requests_of(stack, FIRST) if r.kind == "submit"]) == 1


async def test_a_429_on_a_state_read_parks_the_read_for_the_whole_retry_after(
    clean_database: str,
) -> None:
    async with running_stack(clean_database, **COMPANIES) as stack:
        stack.simulator.script(Outcome(kind="success", webhook="drop"))
        job = await stack.submit(body={"n": 1})
        assert job["state"] == "accepted"
        spent = await stack.api.post(f"{stack.simulator_url}/_sim/budgets/{FIRST}/spend")
        window_ends = datetime.fromisoformat(spent.json()["resetAt"])
        read_deferred = await stack.wait_for_event(job["id"], "state_read_deferred", timeout=10)
        assert read_deferred["state"] == "accepted"
        ended = await stack.wait_for_end(job["id"], timeout=WINDOW_SECONDS + 15)
        assert ended["state"] == "succeeded" and ended["resolvedBy"] == "poll"
    reads = [r for r in requests_of(stack, FIRST) if r.kind == "state"]
    assert [r.status for r in reads if r.at < window_ends] == [429]
    assert [r.status for r in reads if r.at >= window_ends] == [200]


async def test_readyz_shows_each_companys_budget(clean_database: str) -> None:
    async with running_stack(clean_database, **COMPANIES) as stack:
        before = (await stack.api.get("/readyz")).json()["rateBudgets"]
        await stack.submit(body={"n": 1}, tenant=SECOND)
        after = {b["tenant"]: b for b in (await stack.api.get("/readyz")).json()["rateBudgets"]}
    assert [b["tenant"] for b in before] == [FIRST, SECOND]
    assert all(b["limit"] is None for b in before)  # nothing heard from Visma yet
    assert after[SECOND]["limit"] == 1000
    assert 990 <= after[SECOND]["remaining"] < 1000  # the submission, and reads since
    assert 0 < after[SECOND]["resetSeconds"] <= not_before(WINDOW_SECONDS)
    assert after[FIRST]["limit"] is None


async def test_metrics_show_each_companys_budget(clean_database: str) -> None:
    async with running_stack(clean_database, **COMPANIES) as stack:
        await stack.submit(body={"n": 1}, tenant=SECOND)
        text = (await stack.api.get("/metrics")).text
    samples = dict(
        line.rsplit(" ", 1)
        for line in text.splitlines()
        if line.startswith("visma_hooks_visma_rate")
    )
    assert float(samples[f'visma_hooks_visma_rate_limit_requests{{company="{SECOND}"}}']) == 1000
    remaining = float(samples[f'visma_hooks_visma_rate_remaining_requests{{company="{SECOND}"}}'])
    assert 990 <= remaining < 1000
    reset = float(samples[f'visma_hooks_visma_rate_reset_seconds{{company="{SECOND}"}}'])
    assert 0 < reset <= not_before(WINDOW_SECONDS)
    # Nothing heard from Visma for the first company yet: no sample, rather than a made-up one.
    assert not any(FIRST + '"' in key for key in samples)


async def test_a_restarted_service_starts_from_the_budget_it_recorded(
    clean_database: str,
) -> None:
    quick = {**COMPANIES, "HOUSEKEEPING_INTERVAL_SECONDS": 0.2}
    async with running_stack(clean_database, **quick) as stack:
        await stack.submit(body={"n": 1}, tenant=SECOND)
        deadline = time.monotonic() + 10
        while True:  # until a housekeeping pass has recorded what the answer said
            records = await stored_budgets(clean_database)
            if SECOND in records or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
    assert records[SECOND].limit == 1000 and records[SECOND].remaining is not None
    async with running_stack(clean_database, **quick) as restarted:
        deadline = time.monotonic() + 10
        while True:  # until the first pass has restored it
            budgets = (await restarted.api.get("/readyz")).json()["rateBudgets"]
            known = {b["tenant"]: b for b in budgets if b["limit"] is not None}
            if SECOND in known or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        sent = requests_of(restarted, SECOND)
    assert known[SECOND]["limit"] == 1000
    assert sent == []  # known without asking Visma


async def stored_budgets(database_url: str) -> dict:
    engine = create_engine(database_url)
    try:
        async with create_sessionmaker(engine).begin() as session:
            return {r.tenant: r for r in await store.recorded_budgets(session)}
    finally:
        await engine.dispose()
