"""The job path end to end: service and simulator as real HTTP servers over loopback."""

from __future__ import annotations

import pytest

from service.domain.visma_errors import HINT_NO_LICENSE
from service.simulator import Outcome
from tests.conftest import WEBHOOK_SECRET
from tests.stack import Stack, next_check_of, running_stack

pytestmark = pytest.mark.e2e


@pytest.fixture(name="stack")
async def fixture_stack(clean_database: str):
    async with running_stack(clean_database) as stack:
        yield stack


async def test_job_succeeds_with_its_created_id(stack: Stack) -> None:
    submitted = await stack.submit(
        path="/v1/customer", body={"name": "Acme AS"}, tags={"orderRef": "SO-88213"}
    )
    # Visma may finish the job (and its webhook resolve it) before our 201 is written.
    assert submitted["state"] in ("accepted", "succeeded")
    assert submitted["vismaJobId"]
    job = await stack.wait_for_end(submitted["id"])
    assert job["state"] == "succeeded"
    assert job["httpStatus"] == 201
    visma_job = stack.simulator.jobs[job["vismaJobId"]]
    assert job["createdResourceId"] == visma_job.result.headers["Location"].rsplit("/", 1)[-1]
    assert job["resolvedBy"] == "webhook"
    assert job["error"] is None and job["finishedAt"] is not None
    kinds = [e["kind"] for e in job["events"]]
    assert kinds[0] == "submitted" and kinds[-1] == "succeeded"
    assert kinds.count("accepted") == 1 and kinds.count("webhook") == 1
    # What Visma received: our correlation header, the tags, the body.
    assert visma_job.request_headers["erp-api-background"] == (
        f"subscription:vh-job-id={job['id']},orderRef=SO-88213"
    )
    assert visma_job.request_body == b'{"name":"Acme AS"}'
    # The webhook carried the tag back as a header of its own, and it is in the inbox.
    [delivery] = await stack.inbox()
    assert delivery["jobId"] == job["id"]
    assert delivery["headers"]["orderref"] == "SO-88213"


async def test_job_failing_with_fault_12027_has_fault_code_and_hint(stack: Stack) -> None:
    stack.simulator.script(Outcome(kind="no_license"))
    submitted = await stack.submit(path="/v1/salesorder", body={"orderType": "SO"})
    job = await stack.wait_for_end(submitted["id"])
    assert job["state"] == "failed"
    assert job["error"]["faultCode"] == "12027"
    assert job["error"]["type"] == "IPPException"
    assert job["error"]["message"] == "No license for this company."
    assert job["error"]["messageId"].startswith("12027_")
    assert job["hint"] == HINT_NO_LICENSE


async def test_job_failing_with_a_400_shows_the_message(stack: Stack) -> None:
    stack.simulator.script(Outcome(kind="bad_request", message="'CustomerId' is not valid."))
    submitted = await stack.submit(path="/v1/customerinvoice", body={})
    job = await stack.wait_for_end(submitted["id"])
    assert job["state"] == "failed"
    assert job["httpStatus"] == 400
    assert job["error"]["message"] == "'CustomerId' is not valid."
    assert "'CustomerId' is not valid." in job["hint"]


async def test_webhook_before_the_202_still_resolves_the_job(stack: Stack) -> None:
    stack.simulator.script(Outcome(kind="success", webhook_before_accept=True))
    submitted = await stack.submit(path="/v1/customer", body={"name": "Early Bird"})
    job = await stack.wait_for_end(submitted["id"])
    assert job["state"] == "succeeded"
    assert job["createdResourceId"]
    kinds = [e["kind"] for e in job["events"]]
    # The webhook was stored before the 202 was recorded, and the late 202 moved nothing back.
    assert kinds.index("webhook") < kinds.index("accepted")
    assert job["acceptedAt"] is not None


async def test_duplicate_delivery_changes_nothing(stack: Stack) -> None:
    stack.simulator.script(Outcome(kind="success", duplicate_webhook=True))
    submitted = await stack.submit(path="/v1/customer", body={"name": "Twice"})
    job = await stack.wait_for_end(submitted["id"])
    await stack.simulator.wait_until(lambda: len(stack.simulator.deliveries) >= 2)
    attempts = list(stack.simulator.deliveries)
    assert {a.notification_id for a in attempts} == {attempts[0].notification_id}
    assert all(a.status_code == 200 for a in attempts)
    first = await stack.api.get(f"/api/v1/jobs/{job['id']}")
    # Both copies were answered 200, so all they did is committed; the finished job has no
    # read due, so nothing more can follow from them.
    assert await next_check_of(stack.settings.DATABASE_URL, job["id"]) is None
    again = await stack.api.get(f"/api/v1/jobs/{job['id']}")
    assert again.headers["etag"] == first.headers["etag"]
    assert again.json() == first.json()
    assert len(await stack.inbox()) == 1
    assert [e["kind"] for e in again.json()["events"]].count("webhook") == 1


async def test_rejected_submission_records_the_parsed_error(stack: Stack) -> None:
    stack.simulator.script(Outcome(kind="reject", reject_status=400, message="Bad request body."))
    submitted = await stack.submit(path="/v1/customer", body={"x": 1})
    assert submitted["state"] == "rejected"
    assert submitted["httpStatus"] == 400
    assert submitted["vismaJobId"] is None
    assert submitted["error"]["message"] == "Bad request body."
    assert submitted["finishedAt"] is not None


async def test_token_is_cached_between_submissions(stack: Stack) -> None:
    jobs = [await stack.submit(body={"n": n}) for n in range(5)]
    for job in jobs:
        assert (await stack.wait_for_end(job["id"]))["state"] == "succeeded"
    assert stack.simulator.tokens_issued == 1


async def test_job_without_notify_asks_for_no_webhook(stack: Stack) -> None:
    submitted = await stack.submit(body={"n": 1}, notify=False)
    visma_job = stack.simulator.jobs[submitted["vismaJobId"]]
    assert visma_job.request_headers["erp-api-background"] == "none"
    await stack.simulator.wait_until(lambda: visma_job.done)
    assert visma_job.notification_ids == []  # Visma sent no webhook for it
    assert (await stack.job(submitted["id"]))["state"] == "accepted"  # left to polling
    assert await stack.inbox() == []


async def test_forged_deliveries_are_refused_and_nothing_is_stored(clean_database: str) -> None:
    async with running_stack(clean_database, simulator_secret="a-secret-we-do-not-know") as stack:
        submitted = await stack.submit(body={"n": 1})
        await stack.simulator.wait_until(lambda: len(stack.simulator.deliveries) >= 2)
        assert {a.status_code for a in stack.simulator.deliveries} == {401}
        assert await stack.inbox() == []
        assert (await stack.job(submitted["id"]))["state"] == "accepted"


async def test_rotated_secret_verifies(clean_database: str) -> None:
    async with running_stack(
        clean_database,
        simulator_secret="new-secret",
        VISMA_WEBHOOK_SECRETS=[WEBHOOK_SECRET, "new-secret"],
    ) as stack:
        submitted = await stack.submit(body={"n": 1})
        job = await stack.wait_for_end(submitted["id"])
        assert job["state"] == "succeeded" and job["resolvedBy"] == "webhook"
