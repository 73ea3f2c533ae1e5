"""Issues end to end: jobs that fail against the simulator, grouped by cause, alerted once per
transition, and moved by a person over the API."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from service.domain.visma_errors import HINT_NO_LICENSE
from service.simulator import Outcome
from tests.harness import in_process
from tests.sink import SIGNING_SECRET, Sink
from tests.stack import Stack, running_stack

pytestmark = pytest.mark.e2e

READ_TOKEN = "issues-read-token"
STATUS_TOKEN = "status-token-issues"
ERP_API = "Visma.net ERP API"


def issue_settings(sink: Sink, **overrides: Any) -> dict[str, Any]:
    return {
        "ALERT_WEBHOOK_URLS": [f"{sink.url}/hook/a"],
        "ALERT_SIGNING_SECRET": SIGNING_SECRET,
        "ALERT_POLL_SECONDS": 0.05,
        "ALERT_BURST_WINDOW_SECONDS": 0,
        "API_READ_TOKENS": [READ_TOKEN],
        **overrides,
    }


async def issues(stack: Stack, **params: str) -> dict[str, Any]:
    response = await stack.api.get("/api/v1/issues", params=params)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


async def fail_jobs(stack: Stack, count: int, *, path: str = "/v1/salesorder") -> list[str]:
    """`count` jobs that Visma fails with fault 12027 (no licence), once each has ended."""
    stack.simulator.script(Outcome(kind="no_license", times=count))
    jobs = await asyncio.gather(*(stack.submit(path=path) for _ in range(count)))
    ended = await asyncio.gather(*(stack.wait_for_end(j["id"]) for j in jobs))
    assert {j["state"] for j in ended} == {"failed"}
    return [j["id"] for j in jobs]


async def test_twenty_jobs_failing_with_one_fault_are_one_issue_with_one_alert(
    clean_database: str, sink: Sink
) -> None:
    settings = issue_settings(sink, ALERT_JOB_FAILURES=False)
    async with running_stack(clean_database, **settings) as stack:
        job_ids = await fail_jobs(stack, 20)
        listed = await issues(stack)
        assert listed["metadata"]["totalCount"] == 1
        [issue] = listed["items"]
        assert issue["state"] == "open"
        assert issue["jobCount"] == 20
        assert issue["kind"] == "failed"
        assert issue["faultCode"] == "12027"
        assert issue["method"] == "POST" and issue["pathTemplate"] == "/v1/salesorder"
        assert issue["hint"] == HINT_NO_LICENSE
        assert issue["message"]
        assert issue["firstSeenAt"] <= issue["lastSeenAt"]
        assert issue["firstJobId"] in job_ids
        # Each job names its issue.
        for job_id in job_ids:
            assert (await stack.job(job_id))["issueId"] == issue["id"]

        # The issue's page lists its jobs, paged.
        response = await stack.api.get(
            f"/api/v1/issues/{issue['id']}", params={"pageSize": "15", "pageNumber": "2"}
        )
        assert response.status_code == 200, response.text
        detail = response.json()
        assert detail["jobCount"] == 20
        assert detail["jobs"]["metadata"]["totalCount"] == 20
        assert len(detail["jobs"]["items"]) == 5
        first = await stack.api.get(f"/api/v1/issues/{issue['id']}", params={"pageSize": "15"})
        shown = {j["id"] for j in first.json()["jobs"]["items"]} | {
            j["id"] for j in detail["jobs"]["items"]
        }
        assert shown == set(job_ids)

        # One alert for the issue; per-job alerts are off (ALERT_JOB_FAILURES=false).
        [hook] = await sink.wait_for("/hook/a", 1)
        alert = hook.json()
        assert alert["kind"] == "issue.opened"
        assert alert["issue"]["id"] == issue["id"]
        assert alert["issue"]["hint"] == HINT_NO_LICENSE
        assert "12027" in alert["summary"]
        await asyncio.sleep(0.5)
        assert len(sink.delivered("/hook/a")) == 1


async def test_issue_moves_and_reopens_on_a_new_failure(clean_database: str, sink: Sink) -> None:
    async with running_stack(clean_database, **issue_settings(sink)) as stack:
        [job_id] = await fail_jobs(stack, 1)
        issue_id = (await stack.job(job_id))["issueId"]
        url = f"/api/v1/issues/{issue_id}"

        # A read token may look, not move.
        read = {"Authorization": f"Bearer {READ_TOKEN}"}
        assert (await stack.api.get(url, headers=read)).status_code == 200
        refused = await stack.api.post(f"{url}/acknowledge", headers=read)
        assert refused.status_code == 403, refused.text

        acknowledged = await stack.api.post(f"{url}/acknowledge")
        assert acknowledged.status_code == 200, acknowledged.text
        assert acknowledged.json()["state"] == "acknowledged"
        # Again: a retried click changes nothing and is no error.
        assert (await stack.api.post(f"{url}/acknowledge")).json()["state"] == "acknowledged"

        resolved = await stack.api.post(f"{url}/resolve")
        assert resolved.status_code == 200 and resolved.json()["state"] == "resolved"
        assert resolved.json()["resolvedAt"]
        back = await stack.api.post(f"{url}/acknowledge")
        assert back.status_code == 409, back.text
        assert back.json()["error"] == "invalid_state"
        unknown = await stack.api.post(f"{url}/delete")
        assert unknown.status_code in (404, 405)
        missing = await stack.api.post("/api/v1/issues/no-such-issue/resolve")
        assert missing.status_code == 404

        # The licence fails again: the same issue, open again, one reopened alert.
        await fail_jobs(stack, 2)
        issue = (await stack.api.get(url)).json()
        assert issue["state"] == "open" and issue["jobCount"] == 3
        assert issue["resolvedAt"] is None
        hooks = await sink.wait_for("/hook/a", 5)
        kinds = sorted(h.json()["kind"] for h in hooks)
        assert kinds == ["issue.opened", "issue.reopened", "job.failed", "job.failed", "job.failed"]

        # Ignored: new failures count, but it stays ignored and alerts no more.
        assert (await stack.api.post(f"{url}/ignore")).json()["state"] == "ignored"
        await fail_jobs(stack, 1)
        issue = (await stack.api.get(url)).json()
        assert issue["state"] == "ignored" and issue["jobCount"] == 4
        listed = await issues(stack, state="ignored")
        assert [i["id"] for i in listed["items"]] == [issue_id]
        assert (await issues(stack, state="open"))["metadata"]["totalCount"] == 0


async def test_causes_make_issues_of_their_own(clean_database: str, sink: Sink) -> None:
    async with running_stack(clean_database, **issue_settings(sink)) as stack:
        # Ids in the path are one template: two invoices are one issue.
        for number in ("000123", "000456"):
            stack.simulator.script(Outcome(kind="no_license"))
            job = await stack.submit(path=f"/v1/customerInvoice/{number}/action/release")
            await stack.wait_for_end(job["id"])
        # Another fault on the same path, and the same fault on another path: two more.
        stack.simulator.script(Outcome(kind="bad_request", fault_code=None))
        job = await stack.submit(path="/v1/customerInvoice/000789/action/release")
        await stack.wait_for_end(job["id"])
        await fail_jobs(stack, 1, path="/v1/salesorder")
        # Refused at once (HTTP 422, no fault code) is a kind of its own.
        stack.simulator.script(Outcome(kind="reject", reject_status=422))
        rejected = await stack.submit(path="/v1/salesorder")
        assert rejected["state"] == "rejected"

        listed = (await issues(stack))["items"]
        by_cause = {(i["kind"], i["faultCode"], i["httpStatus"], i["pathTemplate"]) for i in listed}
        template = "/v1/customerInvoice/{id}/action/release"
        assert by_cause == {
            ("failed", "12027", None, template),
            ("failed", None, 400, template),
            ("failed", "12027", None, "/v1/salesorder"),
            ("rejected", None, 422, "/v1/salesorder"),
        }
        [licence] = [i for i in listed if i["pathTemplate"] == template and i["faultCode"]]
        assert licence["jobCount"] == 2

        # A succeeded job makes none.
        ok = await stack.submit(path="/v1/salesorder")
        assert (await stack.wait_for_end(ok["id"]))["state"] == "succeeded"
        assert (await stack.job(ok["id"]))["issueId"] is None
        assert (await issues(stack))["metadata"]["totalCount"] == 4

        # Filters are checked.
        assert (await issues(stack, state="acknowledged,open"))["metadata"]["totalCount"] == 4
        bad = await stack.api.get("/api/v1/issues", params={"state": "closed"})
        assert bad.status_code == 400 and "state" in bad.json()["detail"]
        bad = await stack.api.get("/api/v1/issues", params={"sort": "x"})
        assert bad.status_code == 400
        assert (await issues(stack, tenant="someone-else"))["metadata"]["totalCount"] == 0
        tenant = listed[0]["tenant"]
        assert (await issues(stack, tenant=tenant))["metadata"]["totalCount"] == 4


async def test_a_failure_during_an_open_incident_names_it(clean_database: str, sink: Sink) -> None:
    settings = issue_settings(sink, STATUS_WEBHOOK_TOKEN=STATUS_TOKEN)
    async with running_stack(clean_database, **settings) as stack:
        page = stack.simulator.statuspage
        opened = await page.set_incident(
            "Background jobs fail",
            "investigating",
            body="Some background jobs fail.",
            components=[ERP_API],
        )
        assert opened.status_code == 200
        incident_id = opened.payload["incident"]["id"]
        [job_id] = await fail_jobs(stack, 1)
        issue_id = (await stack.job(job_id))["issueId"]
        issue = (await stack.api.get(f"/api/v1/issues/{issue_id}")).json()
        assert issue["incident"]["id"] == incident_id
        assert issue["incident"]["name"] == "Background jobs fail"
        alerts = [h.json() for h in await sink.wait_for("/hook/a", 3)]
        [alert] = [a for a in alerts if a["kind"] == "issue.opened"]
        assert alert["issue"]["incident"]["id"] == incident_id

        # Once it is resolved, a new cause's failure names no incident.
        await page.set_incident("Background jobs fail", "resolved", incident_id=incident_id)
        await asyncio.sleep(0.2)
        stack.simulator.script(Outcome(kind="bad_request", fault_code=None))
        job = await stack.submit(path="/v1/customer")
        await stack.wait_for_end(job["id"])
        other = await stack.api.get(f"/api/v1/issues/{(await stack.job(job['id']))['issueId']}")
        assert other.json()["incident"] is None


async def wait_for_operation(stack: Stack, operation_id: str, *, timeout: float = 30) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        response = await stack.api.get(f"/api/v1/operations/{operation_id}")
        assert response.status_code == 200, response.text
        operation = response.json()
        if operation["state"] in ("done", "cancelled"):
            return operation
        assert asyncio.get_running_loop().time() < deadline, operation
        await asyncio.sleep(0.05)


async def test_resending_an_issue_sends_each_failed_job_once(
    clean_database: str, sink: Sink
) -> None:
    async with running_stack(clean_database, **issue_settings(sink)) as stack:
        job_ids = await fail_jobs(stack, 20)
        issue_id = (await stack.job(job_ids[0]))["issueId"]
        url = f"/api/v1/issues/{issue_id}/resend"

        # A dry run counts, and sends nothing.
        sent_before = len(stack.simulator.jobs)
        dry = await stack.api.post(url, json={"dryRun": True})
        assert dry.status_code == 200, dry.text
        assert dry.json()["count"] == 20 and set(dry.json()["jobIds"]) == set(job_ids)
        assert len(stack.simulator.jobs) == sent_before
        read = {"Authorization": f"Bearer {READ_TOKEN}"}
        assert (await stack.api.post(url, json={"dryRun": True}, headers=read)).status_code == 403
        assert (await stack.api.post(url, json={"dryRun": "yes"})).status_code == 400
        assert (await stack.api.post(url, content=b"{")).status_code == 400
        assert (await stack.api.post("/api/v1/issues/nope/resend")).status_code == 404

        # The licence is fixed: the simulator succeeds again. Resend for real.
        started = await stack.api.post(url)
        assert started.status_code == 202, started.text
        operation = started.json()
        assert operation["kind"] == "resend" and operation["total"] == 20
        assert started.headers["location"] == f"/api/v1/operations/{operation['id']}"
        done = await wait_for_operation(stack, operation["id"])
        assert done["state"] == "done"
        assert (done["done"], done["failed"]) == (20, 0)

        new_ids = []
        for job_id in job_ids:
            old = await stack.job(job_id)
            assert old["resentAs"], old
            new_ids.append(old["resentAs"])
            assert "resent" in [e["kind"] for e in old["events"]]
        assert len(set(new_ids)) == 20
        for new_id in new_ids:
            new = await stack.wait_for_end(new_id)
            assert new["state"] == "succeeded", new
            assert new["resentFrom"] in job_ids
            assert new["issueId"] is None

        # Nothing left to resend: the dry run says so, and a second resend does nothing.
        assert (await stack.api.post(url, json={"dryRun": True})).json()["count"] == 0
        again = await stack.api.post(url, json={})
        assert again.status_code == 202
        assert (await wait_for_operation(stack, again.json()["id"]))["done"] == 0
        # Visma got each job twice: the failed send and its one resend.
        assert len(stack.simulator.jobs) == sent_before + 20


async def test_an_operation_cancelled_before_it_runs_resends_nothing(
    clean_database: str, sink: Sink
) -> None:
    async with running_stack(clean_database, **issue_settings(sink)) as stack:
        [job_id] = await fail_jobs(stack, 1)
        issue_id = (await stack.job(job_id))["issueId"]
    # A replica whose workers do not run: the operation it starts stays queued.
    async with in_process(clean_database) as harness:
        client = harness.client
        started = await client.post(f"/api/v1/issues/{issue_id}/resend")
        assert started.status_code == 202, started.text
        operation_id = started.json()["id"]
        assert started.json()["state"] == "queued"
        cancelled = await client.post(f"/api/v1/operations/{operation_id}/cancel")
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["state"] == "cancelled" and cancelled.json()["finishedAt"]
        again = await client.post(f"/api/v1/operations/{operation_id}/cancel")
        assert again.status_code == 200 and again.json()["state"] == "cancelled"
        assert await harness.resources.operations.run_once() == 0
        assert (await client.get(f"/api/v1/jobs/{job_id}")).json()["resentAs"] is None
        assert (await client.get(f"/api/v1/operations/{operation_id}")).json()["done"] == 0

        # One that ran to its end cannot be cancelled.
        operation_id = (await client.post(f"/api/v1/issues/{issue_id}/resend")).json()["id"]
        assert await harness.resources.operations.run_once() == 1
        done = (await client.get(f"/api/v1/operations/{operation_id}")).json()
        assert (done["state"], done["done"]) == ("done", 1)
        refused = await client.post(f"/api/v1/operations/{operation_id}/cancel")
        assert refused.status_code == 409, refused.text
        assert (await client.get("/api/v1/operations/nope")).status_code == 404
