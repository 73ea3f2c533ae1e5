"""Many companies end to end: each job goes out with its own company's token, is read with
it, and a delivery that names another company changes nothing."""

from __future__ import annotations

import uuid

import httpx
import pytest

from service.domain import PROBLEM_TENANT_DIFFERS
from service.simulator import Outcome
from service.visma import signatures
from tests.conftest import WEBHOOK_SECRET
from tests.stack import Stack, next_check_of, running_stack

pytestmark = pytest.mark.e2e

FIRST, SECOND = "sim-tenant", "sim-tenant-2"


@pytest.fixture(name="stack")
async def fixture_stack(clean_database: str):
    async with running_stack(
        clean_database,
        chaos={"other_tenant_ids": [SECOND]},
        VISMA_TENANT_ID=f"{FIRST}, {SECOND}",
    ) as stack:
        yield stack


async def test_jobs_of_two_companies_go_out_with_their_own_tokens_and_resolve(
    stack: Stack,
) -> None:
    default = await stack.submit(body={"name": "Default AS"})
    second = await stack.submit(body={"name": "Second AS"}, tenant=SECOND)

    ended = [await stack.wait_for_end(job["id"]) for job in (default, second)]

    assert [job["state"] for job in ended] == ["succeeded", "succeeded"]
    assert [job["tenant"] for job in ended] == [FIRST, SECOND]
    # The simulator knows which company's token sent each call and read each state.
    sim = stack.simulator
    assert [sim.jobs[job["vismaJobId"]].tenant for job in ended] == [FIRST, SECOND]
    for job in ended:
        reads = [r for r in sim.requests if r.job_id == job["vismaJobId"]]
        assert reads and {r.tenant for r in reads} == {job["tenant"]}
        assert {r.status for r in reads} <= {200, 202}
    listed = await stack.api.get("/api/v1/jobs", params={"tenant": SECOND})
    assert [item["id"] for item in listed.json()["items"]] == [second["id"]]
    assert listed.json()["metadata"]["totalCount"] == 1


async def test_a_company_not_configured_is_refused_with_400(stack: Stack) -> None:
    response = await stack.api.post(
        "/api/v1/jobs", json={"method": "POST", "path": "/v1/customer", "tenant": "elsewhere"}
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_input"
    assert "'elsewhere' is not one of" in response.json()["detail"]
    assert stack.simulator.jobs == {}


async def test_a_delivery_naming_another_company_changes_nothing(
    stack: Stack, clean_database: str
) -> None:
    stack.simulator.script(Outcome(webhook="drop"))
    job = await stack.submit(body={"name": "Second AS"}, tenant=SECOND)
    assert job["state"] == "accepted"
    before = await stack.api.get(f"/api/v1/jobs/{job['id']}")
    due_before = await next_check_of(clean_database, job["id"])
    body = (
        f'{{"id": "{job["vismaJobId"]}", '
        f'"stateLocation": "{stack.simulator_url}/v1/background/{job["vismaJobId"]}"}}'
    ).encode()
    headers = {
        signatures.SIGNATURE_HEADER: signatures.sign(body, WEBHOOK_SECRET),
        signatures.NOTIFICATION_ID_HEADER: str(uuid.uuid4()),
        signatures.TENANT_ID_HEADER: FIRST,
        "vh-job-id": job["id"],
    }
    async with httpx.AsyncClient(base_url=stack.service_url) as client:
        response = await client.post("/webhooks/visma", content=body, headers=headers)

    assert response.status_code == 200  # stored, so the dispatcher does not retry it
    [flagged] = await stack.inbox()
    assert (flagged["matched"], flagged["problem"]) == (False, PROBLEM_TENANT_DIFFERS)
    after = await stack.api.get(f"/api/v1/jobs/{job['id']}")
    assert after.headers["etag"] == before.headers["etag"]
    assert after.json() == before.json()
    assert await next_check_of(clean_database, job["id"]) == due_before  # no read made due
