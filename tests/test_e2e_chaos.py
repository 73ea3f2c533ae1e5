"""Visma's failure modes, rehearsed with the simulator's chaos settings, end to end."""

from __future__ import annotations

import pytest

from service.simulator import Outcome
from tests.stack import Stack, running_stack

pytestmark = pytest.mark.e2e


def submits(stack: Stack) -> list:
    return [r for r in stack.simulator.requests if r.kind == "submit"]


async def test_lost_202_still_resolves_from_its_webhook(clean_database: str) -> None:
    async with running_stack(clean_database) as stack:
        stack.simulator.script(Outcome(kind="success", drop_accept=True))
        response = await stack.api.post(
            "/api/v1/jobs", json={"method": "POST", "path": "/v1/customer", "body": {"n": 1}}
        )
        assert response.status_code == 201
        submitted = response.json()
        assert submitted["vismaJobId"] is None  # we never saw the 202
        job = await stack.wait_for_end(submitted["id"])
        assert job["state"] == "succeeded" and job["resolvedBy"] == "webhook"
        assert job["vismaJobId"] in stack.simulator.jobs  # learnt from the webhook body
        kinds = [e["kind"] for e in job["events"]]
        assert "submit_uncertain" in kinds and "accepted" not in kinds
        assert len(submits(stack)) == 1


async def test_lost_202_without_a_webhook_expires_and_is_never_resent(
    clean_database: str,
) -> None:
    async with running_stack(clean_database, JOB_TTL_SECONDS=1.5, POLL_AFTER_SECONDS=0.2) as stack:
        stack.simulator.script(Outcome(kind="success", drop_accept=True, webhook="drop"))
        submitted = (
            await stack.api.post(
                "/api/v1/jobs", json={"method": "POST", "path": "/v1/customer", "body": {}}
            )
        ).json()
        job = await stack.wait_for_end(submitted["id"])
        assert job["state"] == "expired"
        assert "fate is unknown" in job["events"][-1]["detail"]["note"]
        assert len(submits(stack)) == 1  # never re-sent on its own


async def test_burst_of_429s_delays_but_loses_no_work(clean_database: str) -> None:
    async with running_stack(
        clean_database, POLL_AFTER_SECONDS=0.3, chaos={"seed": 7, "rate_limit_share": 0.35}
    ) as stack:
        stack.simulator.script(Outcome(kind="success", times=None, webhook="drop"))
        jobs = [await stack.submit(body={"n": n}) for n in range(6)]
        ended = [await stack.wait_for_end(job["id"], timeout=40) for job in jobs]
        assert [job["state"] for job in ended] == ["succeeded"] * 6
        assert stack.simulator.stats()["chaos"]["rate_limited"] > 0
        assert len({job["createdResourceId"] for job in ended}) == 6


async def test_server_errors_on_state_reads_are_retried(clean_database: str) -> None:
    async with running_stack(clean_database, POLL_AFTER_SECONDS=0.3) as stack:
        stack.simulator.script(Outcome(kind="no_license", webhook="drop"))
        submitted = await stack.submit(body={"n": 1})

        def state_reads() -> list:
            return [r for r in stack.simulator.requests if r.kind == "state"]

        await stack.api.get("/healthz")
        stack.simulator.chaos.config.server_error_share = 1.0
        await stack.simulator.wait_until(
            lambda: any(r.kind == "state" and r.chaos == "server_error" for r in state_reads()),
            timeout=10,
        )
        assert (await stack.job(submitted["id"]))["state"] == "accepted"
        stack.simulator.chaos.config.server_error_share = 0.0
        job = await stack.wait_for_end(submitted["id"], timeout=40)
        assert job["state"] == "failed" and job["error"]["faultCode"] == "12027"
        refused = [
            r for r in stack.simulator.requests if r.kind == "state" and r.chaos == "server_error"
        ]
        assert refused, "the simulator never answered a state read with 503"


OUTCOMES = [
    Outcome(kind="success"),
    Outcome(kind="no_license"),
    Outcome(kind="bad_request", message="'x' is not valid."),
    Outcome(kind="success"),
    Outcome(kind="action_accepted"),
    Outcome(kind="success"),
]


async def _final_states(stack: Stack) -> list[tuple]:
    jobs = []
    for outcome in OUTCOMES:
        stack.simulator.script(outcome)
        jobs.append(await stack.submit(body={"kind": outcome.kind}))
    ended = [await stack.wait_for_end(job["id"], timeout=30) for job in jobs]
    return [
        (
            j["state"],
            j["httpStatus"],
            (j["error"] or {}).get("faultCode"),
            j["hint"] is None,
            j["createdResourceId"] is not None,
            j["resolvedBy"],
        )
        for j in ended
    ]


async def test_duplicated_and_reordered_deliveries_end_as_clean_ones(clean_database: str) -> None:
    async with running_stack(clean_database) as stack:
        clean = await _final_states(stack)
        clean_inbox = len(await stack.inbox())
    async with running_stack(
        clean_database,
        chaos={
            "seed": 3,
            "webhook_duplicate_share": 1.0,
            "webhook_duplicate_gap_seconds": 0.0,
            "webhook_reorder_window_seconds": 0.4,
            "webhook_delay_seconds": 0.1,
            "webhook_delay_jitter_seconds": 0.2,
        },
    ) as stack:
        chaotic = await _final_states(stack)
        await stack.simulator.wait_until(
            lambda: (
                stack.simulator.stats()["deliveries"]["held"] == 0
                and stack.simulator.stats()["deliveries"]["pending"] == 0
            )
        )
        stats = stack.simulator.stats()["chaos"]
        assert stats["webhooks_duplicated"] == len(OUTCOMES)
        assert stats["webhooks_reordered"] > 0
        # The inbox holds each notification once, across both runs.
        assert len(await stack.inbox()) == 2 * clean_inbox
    assert chaotic == clean
