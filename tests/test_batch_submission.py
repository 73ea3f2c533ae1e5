"""Batches: a night's orders in one request, each job answered on its own, all sent afterwards
as each company's rate budget allows, each exactly once."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from tests.stack import Stack, running_stack

pytestmark = pytest.mark.e2e

FIRST = "sim-tenant"


def job(n: int, **extra: object) -> dict[str, object]:
    return {"method": "POST", "path": "/v1/customer", "body": {"n": n}, **extra}


async def batch(stack: Stack, jobs: list[object]) -> dict:
    answer = await stack.api.post("/api/v1/jobs/batch", json={"jobs": jobs})
    assert answer.status_code == 200, answer.text
    return answer.json()


def submits(stack: Stack) -> list:
    return [r for r in stack.simulator.requests if r.kind == "submit"]


def sent_n(stack: Stack, record: object) -> int:
    """The `n` of the body a background job the simulator accepted was sent with."""
    body = stack.simulator.jobs[record.job_id].request_body  # type: ignore[attr-defined]
    return int(json.loads(body)["n"])


async def test_a_batch_with_one_bad_item_creates_the_rest(clean_database: str) -> None:
    async with running_stack(clean_database) as stack:
        answer = await batch(
            stack,
            [
                job(0),
                {"method": "POST", "path": "/not-visma"},
                job(2, idempotencyKey="night-2"),
                "not an object",
                job(4, tenant="nobody"),
                job(5, idempotencyKey="x" * 300),
            ],
        )
        results = answer["results"]
        made = [r for r in results if r["status"] == 201]
        ended = [await stack.wait_for_end(r["job"]["id"]) for r in made]

    assert [r["index"] for r in results] == list(range(6))
    assert [r["status"] for r in results] == [201, 400, 201, 400, 400, 400]
    for refused in (r for r in results if r["status"] == 400):
        assert refused["error"]["error"] == "invalid_input" and refused["error"]["detail"]
        assert "job" not in refused
    assert "path" in results[1]["error"]["detail"]
    assert "nobody" in results[4]["error"]["detail"]
    assert results[2]["job"]["idempotencyKey"] == "night-2"
    assert [e["state"] for e in ended] == ["succeeded", "succeeded"]
    assert sorted(sent_n(stack, r) for r in submits(stack)) == [0, 2]


async def test_keys_in_a_batch_answer_earlier_jobs_and_refuse_changed_ones(
    clean_database: str,
) -> None:
    async with running_stack(clean_database) as stack:
        single = await stack.api.post(
            "/api/v1/jobs", json=job(1), headers={"Idempotency-Key": "order-1"}
        )
        answer = await batch(
            stack,
            [
                job(1, idempotencyKey="order-1"),  # made by the single request
                job(9, idempotencyKey="order-1"),  # the same key, another body
                job(2, idempotencyKey="order-2"),
                job(2, idempotencyKey="order-2"),  # twice in this batch
            ],
        )
        again = await batch(stack, [job(2, idempotencyKey="order-2")])  # the batch retried
        results = answer["results"]
        await stack.wait_for_end(results[2]["job"]["id"])

    assert single.status_code == 201
    assert [r["status"] for r in results] == [200, 422, 201, 200]
    assert results[0]["job"]["id"] == single.json()["id"]
    assert results[1]["error"]["error"] == "idempotency_key_reused"
    assert results[3]["job"]["id"] == results[2]["job"]["id"]
    assert again["results"][0]["status"] == 200
    assert again["results"][0]["job"]["id"] == results[2]["job"]["id"]
    assert len(submits(stack)) == 2  # order-1 once, order-2 once


async def test_a_batch_envelope_that_is_wrong_is_refused_whole(clean_database: str) -> None:
    async with running_stack(clean_database, MAX_BATCH_JOBS=3, MAX_BATCH_BYTES=2000) as stack:
        too_many = await stack.api.post(
            "/api/v1/jobs/batch", json={"jobs": [job(n) for n in range(4)]}
        )
        too_big = await stack.api.post(
            "/api/v1/jobs/batch", json={"jobs": [job(0, tags={"t": "x" * 3000})]}
        )
        empty = await stack.api.post("/api/v1/jobs/batch", json={"jobs": []})
        not_json = await stack.api.post("/api/v1/jobs/batch", content=b"{")
        no_list = await stack.api.post("/api/v1/jobs/batch", json=[job(0)])
    assert (too_many.status_code, too_big.status_code) == (400, 413)
    assert "MAX_BATCH_JOBS=3" in too_many.json()["detail"]
    assert "MAX_BATCH_BYTES" in too_big.json()["detail"]
    assert {empty.status_code, not_json.status_code, no_list.status_code} == {400}
    assert submits(stack) == []


WINDOW_SECONDS = 6.0


async def test_a_batch_for_a_spent_budget_is_taken_at_once_and_sent_as_it_returns(
    clean_database: str,
) -> None:
    chaos = {"rate_budget": 1000, "rate_budget_window_seconds": WINDOW_SECONDS}
    async with running_stack(clean_database, chaos=chaos, POLL_AFTER_SECONDS=1) as stack:
        # Learn the budget, then spend it: the service knows it must wait for the reset.
        await stack.submit(body={"n": -1})
        spent = await stack.api.post(f"{stack.simulator_url}/_sim/budgets/{FIRST}/spend")
        window_ends = datetime.fromisoformat(spent.json()["resetAt"])
        first = await stack.submit(body={"n": -2})  # earns the 429 that says so
        answer = await batch(stack, [job(n) for n in range(20)])
        ids = [r["job"]["id"] for r in answer["results"]]
        assert [r["job"]["state"] for r in answer["results"]] == ["submitted"] * 20
        ended = [
            await stack.wait_for_end(i, timeout=WINDOW_SECONDS + 20) for i in [*ids, first["id"]]
        ]

    assert [e["state"] for e in ended] == ["succeeded"] * 21
    sent = [r for r in submits(stack) if r.status == 202]
    bodies = sorted(sent_n(stack, r) for r in sent)
    assert bodies == sorted([-1, -2, *range(20)])  # each job sent once
    assert all(r.at >= window_ends for r in sent if sent_n(stack, r) >= 0)
    assert [r for r in submits(stack) if r.status == 429 and r.at >= window_ends] == []


async def test_a_batch_item_with_a_callback_that_may_not_be_called_fails_alone(
    clean_database: str,
) -> None:
    async with running_stack(clean_database, CALLBACK_SIGNING_SECRET="whsec_" + "A" * 32) as stack:
        answer = await batch(
            stack,
            [
                job(0, callbackUrl="http://127.0.0.1:9/cb"),  # plain http, loopback: refused
                job(1),
                job(2, callbackUrl="http://127.0.0.1:9/cb"),
            ],
        )
    assert [r["status"] for r in answer["results"]] == [400, 201, 400]
    assert (
        "callbackUrl" in answer["results"][0]["error"]["detail"]
        or "https" in (answer["results"][0]["error"]["detail"])
    )
