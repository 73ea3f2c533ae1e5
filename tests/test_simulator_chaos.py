"""Simulator chaos over real HTTP: dropped, delayed, duplicated and reordered webhooks, 429s,
503s, forgotten jobs and lost 202s, each seeded so a run repeats."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.routing import Route

from service.cli import main
from service.simulator import (
    CHAOS_FIELDS,
    Chaos,
    Outcome,
    SimulatorConfig,
    SimulatorState,
    TokenBucket,
    create_simulator_app,
)
from service.visma import signatures
from tests.test_simulator import Receiver, serve, token_form

SEED = 20240229
CLIENT = "visma-hooks/host-a/4242"
LIMIT_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")


@pytest.fixture(name="receiver_server", scope="module")
async def fixture_receiver_server() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    app = Starlette(routes=[Route("/hooks", receiver.receive, methods=["POST"])])
    async with serve(app) as url:
        receiver.url = f"{url}/hooks"
        yield receiver


@pytest.fixture(name="receiver")
def fixture_receiver(receiver_server: Receiver) -> Receiver:
    receiver_server.reset()
    return receiver_server


@dataclass
class Sim:
    state: SimulatorState
    api: httpx.AsyncClient
    """Carries a bearer token and the replica's User-Agent."""
    control: httpx.AsyncClient

    async def submit(self, path: str = "/v1/customer", **headers: str) -> httpx.Response:
        return await self.api.post(
            path,
            json={"name": "Acme"},
            headers={"erp-api-background": "subscription:vh-job-id=7", **headers},
        )

    async def submit_ok(self) -> str:
        response = await self.submit()
        assert response.status_code == 202, response.text
        job_id: str = response.json()["id"]
        return job_id

    async def settle(self) -> None:
        """Wait until every job is done and no webhook is held, queued or being retried."""
        sim = self.state
        await sim.wait_until(lambda: all(job.done for job in sim.jobs.values()))
        await sim.wait_until(lambda: sim.webhooks.held == 0 and sim.dispatcher.pending == 0)

    async def chaos_counters(self) -> dict[str, int]:
        stats = (await self.control.get("/_sim/stats")).json()
        counters: dict[str, int] = stats["chaos"]
        return counters


@contextlib.asynccontextmanager
async def running(receiver: Receiver | None, **chaos: Any) -> AsyncIterator[Sim]:
    """A simulator with these chaos settings on loopback, and clients for it."""
    config = SimulatorConfig(
        webhook_url=receiver.url if receiver else None,
        retry_base_seconds=0.01,
        job_duration_seconds=0.01,
        seed=SEED,
        **chaos,
    )
    app = create_simulator_app(config)
    async with (
        serve(app) as url,
        httpx.AsyncClient(base_url=url, headers={"User-Agent": CLIENT}) as api,
        httpx.AsyncClient(base_url=url) as control,
    ):
        # The token endpoint is never subject to chaos, so this works in every mode.
        token = await api.post("/connect/token", data=token_form(config))
        assert token.status_code == 200, token.text
        api.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
        yield Sim(app.state.simulator, api, control)


async def test_webhook_drop_share_one_drops_every_notification(receiver: Receiver) -> None:
    async with running(receiver, webhook_drop_share=1.0) as sim:
        for _ in range(4):
            await sim.submit_ok()
        await sim.settle()

        assert receiver.deliveries == []
        assert (await sim.chaos_counters())["webhooks_dropped"] == 4
        assert all(not job.notification_ids for job in sim.state.jobs.values())


async def test_webhook_drop_share_half_drops_the_seeded_ones(receiver: Receiver) -> None:
    async with running(receiver, webhook_drop_share=0.5) as sim:
        job_ids = [await sim.submit_ok() for _ in range(12)]
        await sim.settle()

        dropped = [not receiver.for_job(job_id) for job_id in job_ids]
    # Jobs finish in the order they came, and each takes one draw: the seed fixes the pattern.
    expected = Chaos(SimulatorConfig(seed=SEED, webhook_drop_share=0.5))
    assert dropped == [expected.drop_webhook() for _ in job_ids]
    assert 0 < sum(dropped) < len(job_ids)
    # Delivered notifications are delivered once each: the decision is not made per attempt.
    assert len(receiver.deliveries) == len(job_ids) - sum(dropped)


async def test_webhook_duplicate_share_sends_same_notification_twice(receiver: Receiver) -> None:
    async with running(
        receiver, webhook_duplicate_share=1.0, webhook_duplicate_gap_seconds=0.1
    ) as sim:
        job_id = await sim.submit_ok()
        await sim.state.wait_until(lambda: len(sim.state.deliveries) == 2)

        first, second = receiver.for_job(job_id)
        assert first.body == second.body
        notification_id = signatures.NOTIFICATION_ID_HEADER
        assert first.headers[notification_id] == second.headers[notification_id]
        assert second.at - first.at >= 0.05  # the 0.1 s gap, less the first copy's latency
        assert (await sim.chaos_counters())["webhooks_duplicated"] == 1


async def test_webhook_delay_holds_first_attempt(receiver: Receiver) -> None:
    async with running(
        receiver, webhook_delay_seconds=0.3, webhook_delay_jitter_seconds=0.1
    ) as sim:
        sent = time.monotonic()
        job_id = await sim.submit_ok()
        await sim.state.wait_until(lambda: sim.state.jobs[job_id].done)

        assert sim.state.webhooks.held == 1
        assert sim.state.stats()["deliveries"]["held"] == 1
        await sim.state.wait_until(lambda: len(receiver.deliveries) == 1)

        # The hold starts when the job ends, after the submission: a strict lower bound.
        waited = receiver.deliveries[0].at - sent
        jitter = Chaos(SimulatorConfig(seed=SEED)).random.uniform(0, 0.1)
        assert 0.3 + jitter <= waited <= 0.3 + jitter + 0.3
        assert (await sim.chaos_counters())["webhooks_delayed"] == 1


async def test_webhook_reorder_window_shuffles_deliveries(receiver: Receiver) -> None:
    async with running(receiver, webhook_reorder_window_seconds=0.4) as sim:
        job_ids = [await sim.submit_ok() for _ in range(6)]
        await sim.state.wait_until(lambda: len(receiver.deliveries) == 6)

        arrived = [json.loads(delivery.body)["id"] for delivery in receiver.deliveries]
        reordered = (await sim.chaos_counters())["webhooks_reordered"]
    expected = list(job_ids)
    random.Random(SEED).shuffle(expected)  # the window's shuffle is the run's only draw
    assert expected != job_ids
    assert sorted(arrived) == sorted(job_ids)
    assert arrived != job_ids  # a later job's webhook came before an earlier one's
    assert reordered == sum(1 for a, b in zip(job_ids, expected, strict=True) if a != b)


async def test_rate_limit_share_answers_429_and_creates_no_job() -> None:
    async with running(None, rate_limit_share=1.0) as sim:
        sim.state.script(Outcome(kind="bad_request"))

        refused = await sim.submit()
        read = await sim.api.get("/v1/background/00000000-0000-0000-0000-000000000000")

        assert refused.status_code == 429
        assert read.status_code == 429
        for name in (*LIMIT_HEADERS, "retry-after"):
            assert refused.headers[name].isdigit(), name
        assert refused.headers["x-ratelimit-remaining"] == "0"
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.json()["ExceptionType"] == "IPPException"
        assert sim.state.jobs == {}
        assert len(sim.state.outcomes.pending) == 1  # not consumed by a refused call
        assert (await sim.control.get("/_sim/chaos")).status_code == 200  # /_sim/ is exempt
        assert (await sim.chaos_counters())["rate_limited"] == 2
        records = (await sim.control.get("/_sim/requests", params={"kind": "submit"})).json()
        assert [(r["status"], r["chaos"]) for r in records["items"]] == [(429, "rate_limit_share")]


async def test_rate_limit_per_second_refuses_when_empty_and_admits_after_reset() -> None:
    async with running(None, rate_limit_per_second=3, announce_rounding="up") as sim:
        admitted = [await sim.api.get("/v1/customer") for _ in range(3)]
        refused = await sim.api.get("/v1/customer")

        assert [r.status_code for r in admitted] == [200, 200, 200]
        assert [r.headers["x-ratelimit-remaining"] for r in admitted] == ["2", "1", "0"]
        assert all(r.headers["x-ratelimit-limit"] == "3" for r in admitted)
        assert refused.status_code == 429
        assert refused.headers["x-ratelimit-remaining"] == "0"
        reset = int(refused.headers["x-ratelimit-reset"])
        assert reset == 1  # 3 tokens at 3 per second: full again within a second
        assert int(refused.headers["retry-after"]) == 1

        await asyncio.sleep(reset)
        again = await sim.api.get("/v1/customer")

        assert again.status_code == 200
        assert again.headers["x-ratelimit-remaining"] == "2"
        assert (await sim.chaos_counters())["rate_limited"] == 1


def test_token_bucket_reports_truthful_waits() -> None:
    now = [0.0]
    bucket = TokenBucket(2, clock=lambda: now[0])

    assert [bucket.take() for _ in range(3)] == [True, True, False]
    assert bucket.seconds_until_token("up") == 1  # 0.5 s, rounded up to whole seconds
    assert bucket.seconds_until_token("down") == 0  # ... and down, as "seconds left" is
    assert bucket.seconds_until_full("up") == 1
    assert bucket.seconds_until_full("down") == 1  # exactly 1 s: nothing to round
    now[0] = 0.5
    assert bucket.take() is True
    slow = TokenBucket(0.5, clock=lambda: now[0])
    assert (slow.limit, slow.take(), slow.take(), slow.seconds_until_token()) == (1, True, False, 2)


async def test_server_error_share_answers_503_and_creates_no_job() -> None:
    async with running(None, server_error_share=1.0) as sim:
        refused = await sim.submit()

        assert refused.status_code == 503
        assert refused.json()["ExceptionType"] == "IPPException"
        assert sim.state.jobs == {}
        assert (await sim.chaos_counters())["server_errors"] == 1


async def test_forget_after_answers_404_for_state_and_410_for_content() -> None:
    async with running(None, forget_after_seconds=0.3) as sim:
        sim.state.script(Outcome(kind="no_license"))  # a job with content
        job_id = await sim.submit_ok()
        await sim.settle()
        state_url = f"/v1/background/{job_id}"

        fresh = await sim.api.get(state_url)
        await sim.state.wait_until(lambda: sim.state.forgotten(sim.state.jobs[job_id]))
        state = await sim.api.get(state_url)
        content = await sim.api.get(f"{state_url}/content")
        await sim.control.put("/_sim/chaos", json={"forgotten_state_status": 410})
        state_410 = await sim.api.get(state_url)

        assert fresh.status_code == 200
        assert state.status_code == 404
        assert content.status_code == 410
        assert state_410.status_code == 410
        assert (await sim.chaos_counters())["forgotten_reads"] == 3


@pytest.mark.parametrize(
    ("chaos", "outcome"),
    [({"accept_drop_share": 1.0}, None), ({}, Outcome(drop_accept=True))],
    ids=["share", "outcome"],
)
async def test_drop_accept_loses_202_but_job_runs_and_webhook_arrives(
    receiver: Receiver,
    caplog: pytest.LogCaptureFixture,
    chaos: dict[str, Any],
    outcome: Outcome | None,
) -> None:
    server_log = logging.getLogger("uvicorn.error")
    server_log.addHandler(caplog.handler)  # uvicorn's loggers do not propagate to the root
    try:
        async with running(receiver, **chaos) as sim:
            if outcome is not None:
                sim.state.script(outcome)

            with pytest.raises(httpx.RemoteProtocolError):
                await sim.submit()
            await sim.state.wait_until(lambda: len(receiver.deliveries) == 1)

            (job,) = sim.state.jobs.values()
            assert job.accept_dropped
            assert json.loads(receiver.deliveries[0].body)["id"] == job.id
            records = (await sim.control.get("/_sim/requests", params={"job_id": job.id})).json()
            assert [(r["kind"], r["status"], r["chaos"]) for r in records["items"]] == [
                ("submit", None, "accept_dropped")
            ]
            assert (await sim.chaos_counters())["accepts_dropped"] == 1
            if outcome is not None:  # the next call, on a new connection, is answered
                assert (await sim.submit()).status_code == 202
    finally:
        server_log.removeHandler(caplog.handler)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_drop_accept_in_process_raises_transport_error() -> None:
    config = SimulatorConfig(public_base_url="https://api.example.test")
    app = create_simulator_app(config)
    app.state.simulator.script(Outcome(drop_accept=True))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        token = (await client.post("/connect/token", data=token_form(config))).json()
        headers = {
            "Authorization": f"Bearer {token['access_token']}",
            "erp-api-background": "none",
        }

        with pytest.raises(httpx.TransportError):
            await client.post("/v1/customer", json={}, headers=headers)

    assert len(app.state.simulator.jobs) == 1


async def test_requests_log_records_client_and_kind() -> None:
    async with running(None) as sim:
        sim.state.script(Outcome(kind="bad_request"))
        job_id = await sim.submit_ok()
        await sim.settle()
        await sim.api.get(f"/v1/background/{job_id}")
        await sim.api.get(f"/v1/background/{job_id}/content")
        await sim.api.get("/v1/customer")
        await sim.control.get("/v1/customer")  # another caller (and no token: 401)

        log = (await sim.control.get("/_sim/requests")).json()["items"]
        mine = await sim.control.get("/_sim/requests", params={"client": CLIENT})
        reads = await sim.control.get("/_sim/requests", params={"job_id": job_id, "kind": "state"})

    assert [(r["kind"], r["client"]) for r in log[:-1]] == [
        ("token", CLIENT),
        ("submit", CLIENT),
        ("state", CLIENT),
        ("content", CLIENT),
        ("call", CLIENT),
    ]
    assert log[-1]["client"] != CLIENT
    assert len(mine.json()["items"]) == 5
    assert [r["path"] for r in reads.json()["items"]] == [f"/v1/background/{job_id}"]


async def test_chaos_control_api_shows_changes_and_resets() -> None:
    async with running(None) as sim:
        defaults = (await sim.control.get("/_sim/chaos")).json()
        changed = await sim.control.put(
            "/_sim/chaos", json={"server_error_share": 1, "rate_limit_per_second": 50}
        )
        failing = await sim.api.get("/v1/customer")
        await sim.control.put("/_sim/chaos", json={"server_error_share": 0})
        limited = await sim.api.get("/v1/customer")
        reset = await sim.control.delete("/_sim/chaos")
        plain = await sim.api.get("/v1/customer")

    assert set(defaults) == set(CHAOS_FIELDS)
    assert defaults["seed"] == SEED
    assert defaults["rate_limit_per_second"] is None
    assert changed.status_code == 200
    assert changed.json()["server_error_share"] == 1
    assert changed.json()["rate_limit_per_second"] == 50
    assert failing.status_code == 503
    assert limited.status_code == 200
    assert limited.headers["x-ratelimit-limit"] == "50"
    assert reset.json() == SimulatorConfig().chaos() | {"seed": SEED}
    assert "x-ratelimit-limit" not in plain.headers


@pytest.mark.parametrize(
    "body",
    [
        '{"colour": "red"}',
        '{"webhook_drop_share": 1.5}',
        '{"webhook_drop_share": "half"}',
        '{"webhook_delay_seconds": -1}',
        '{"webhook_delay_seconds": NaN}',
        '{"rate_limit_per_second": 0}',
        '{"seed": true}',
        '{"seed": 1.5}',
        '{"forgotten_state_status": 500}',
        '{"rate_limit_share": null}',
        "[]",
        "{",
    ],
)
async def test_chaos_control_api_refuses_bad_settings(body: str) -> None:
    app = create_simulator_app(SimulatorConfig())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.put(
            "/_sim/chaos", content=body, headers={"content-type": "application/json"}
        )

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert response.json()["detail"]
    assert app.state.simulator.config.chaos() == SimulatorConfig().chaos()


def test_simulator_config_refuses_bad_chaos() -> None:
    with pytest.raises(ValueError, match="webhook_drop_share"):
        SimulatorConfig(webhook_drop_share=2)
    with pytest.raises(ValueError, match="forgotten_state_status"):
        SimulatorConfig(forgotten_state_status=403)


@pytest.fixture(name="uvicorn_run")
def fixture_uvicorn_run(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """`uvicorn.run` replaced by a recorder, so `simulate` returns at once."""
    apps: list[Any] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **_: apps.append(app))
    for name in ("VISMA_CLIENT_ID", "VISMA_CLIENT_SECRET", "VISMA_TENANT_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("VISMA_WEBHOOK_SECRETS", "s")
    yield apps


def test_simulate_cli_sets_every_chaos_field(uvicorn_run: list[Any]) -> None:
    argv = [
        "simulate",
        "--seed=5",
        "--drop-webhooks=0.1",
        "--delay-webhooks=2",
        "--delay-jitter=0.5",
        "--duplicate-webhooks=0.2",
        "--reorder-window=1",
        "--rate-limit-share=0.3",
        "--rate-limit=10",
        "--server-error-share=0.4",
        "--forget-after=60",
        "--forgotten-state-status=410",
        "--drop-accepts=0.05",
    ]

    assert main(argv) == 0

    (app,) = uvicorn_run
    chaos = app.state.simulator.config.chaos()
    assert chaos == SimulatorConfig().chaos() | {
        "seed": 5,
        "webhook_drop_share": 0.1,
        "webhook_delay_seconds": 2.0,
        "webhook_delay_jitter_seconds": 0.5,
        "webhook_duplicate_share": 0.2,
        "webhook_reorder_window_seconds": 1.0,
        "rate_limit_share": 0.3,
        "rate_limit_per_second": 10.0,
        "server_error_share": 0.4,
        "forget_after_seconds": 60.0,
        "forgotten_state_status": 410,
        "accept_drop_share": 0.05,
    }


def test_simulate_cli_defaults_to_no_chaos(uvicorn_run: list[Any]) -> None:
    assert main(["simulate"]) == 0

    assert uvicorn_run[0].state.simulator.config.chaos() == SimulatorConfig().chaos()


@pytest.mark.parametrize(
    "flag",
    ["--drop-webhooks=1.5", "--delay-webhooks=-1", "--rate-limit=0", "--forget-after=nan"],
)
def test_simulate_cli_refuses_bad_chaos(
    uvicorn_run: list[Any], flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main(["simulate", flag])

    assert flag.split("=")[0] in capsys.readouterr().err
    assert uvicorn_run == []
