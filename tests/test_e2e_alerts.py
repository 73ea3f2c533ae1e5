"""Alerts end to end: the service, the simulator (Visma and its status page) and a real HTTP
alert sink, all as uvicorn servers on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from service.domain.visma_errors import HINT_NO_LICENSE
from service.flows import OutboxSettings
from service.simulator import Outcome
from service.store import create_engine, create_sessionmaker
from service.workers import AlertSender
from tests.harness import in_process
from tests.sink import SIGNING_SECRET, Sink, slack_problem
from tests.stack import Stack, running_stack

pytestmark = pytest.mark.e2e

STATUS_TOKEN = "status-token-e2e"
ERP_API = "Visma.net ERP API"


@contextlib.asynccontextmanager
async def alert_stack(database_url: str, sink: Sink, **overrides: Any) -> AsyncIterator[Stack]:
    """The stack with alerts going to the sink's `/hook/a` (signed JSON) and `/slack/a`."""
    settings: dict[str, Any] = {
        "STATUS_WEBHOOK_TOKEN": STATUS_TOKEN,
        "ALERT_WEBHOOK_URLS": [f"{sink.url}/hook/a"],
        "ALERT_SLACK_URLS": [f"{sink.url}/slack/a"],
        "ALERT_SIGNING_SECRET": SIGNING_SECRET,
        "ALERT_POLL_SECONDS": 0.05,
        "ALERT_RETRY_BASE_SECONDS": 0.05,
        "ALERT_FLAP_WINDOW_SECONDS": 0,
        "ALERT_BURST_WINDOW_SECONDS": 0,
    }
    async with running_stack(database_url, **(settings | overrides)) as stack:
        yield stack


async def alert_list(stack: Stack, **params: str) -> list[dict[str, Any]]:
    response = await stack.api.get("/api/v1/alerts", params={"pageSize": "500", **params})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def wait_for_status(stack: Stack, alert_id: str, status: str) -> dict[str, Any]:
    """The alert once `GET /api/v1/alerts` shows it in `status`."""
    deadline = time.monotonic() + 10
    while True:
        found = {a["id"]: a for a in await alert_list(stack)}
        if found.get(alert_id, {}).get("status") == status:
            return found[alert_id]
        if time.monotonic() > deadline:
            raise AssertionError(f"alert {alert_id} never {status}: {found.get(alert_id)}")
        await asyncio.sleep(0.05)


async def test_status_alerts_reach_json_and_slack_sinks_once_per_transition(
    clean_database: str, sink: Sink
) -> None:
    async with alert_stack(clean_database, sink) as stack:
        page = stack.simulator.statuspage
        outage = await page.set_component(ERP_API, "major_outage")
        assert outage.status_code == 200
        [hook] = await sink.wait_for("/hook/a", 1)
        [slack] = await sink.wait_for("/slack/a", 1)
        alert = hook.json()
        assert alert["kind"] == "component.status"
        assert alert["summary"] == "Visma.net ERP API: operational -> major outage"
        assert alert["component"]["name"] == ERP_API
        assert alert["component"]["status"] == "major_outage"
        assert hook.headers["webhook-id"] == alert["id"]
        assert slack_problem(slack.body) is None
        assert slack.json()["text"] == "Visma.net ERP API: operational -&gt; major outage"

        # The same delivery again, and an update stamped before the outage: nothing new.
        assert (await page.resend(outage.index)).status_code == 200
        stale_at = page.component(ERP_API).updated_at - timedelta(seconds=30)
        stale = await page.set_component(ERP_API, "operational", at=stale_at)
        assert stale.status_code == 200
        # An alert is raised in the same transaction as the delivery that caused it: these
        # two were answered, and raised none, so none can be sent.
        assert len(await alert_list(stack)) == 1
        assert len(sink.hits) == 2

        await page.set_component(ERP_API, "operational")
        opened = await page.set_incident(
            "Slow background jobs",
            "investigating",
            body="Jobs take longer than usual.",
            components=[ERP_API],
        )
        incident_id = opened.payload["incident"]["id"]
        await page.set_incident("Slow background jobs", "resolved", incident_id=incident_id)
        # Alerts due at once are sent side by side: they may arrive in either order.
        hooks = sorted(
            await sink.wait_for("/hook/a", 4), key=lambda h: datetime.fromisoformat(h.json()["at"])
        )
        slacks = await sink.wait_for("/slack/a", 4)
        assert [h.json()["summary"] for h in hooks] == [
            "Visma.net ERP API: operational -> major outage",
            "Visma.net ERP API is operational again (was major outage)",
            "Incident opened: Slow background jobs (investigating, minor impact)",
            "Incident resolved: Slow background jobs",
        ]
        incident = hooks[2].json()["incident"]
        assert incident["shortlink"] == f"https://stspg.io/{incident_id[:7]}"
        assert incident["components"][0]["name"] == ERP_API
        assert incident["updates"][0]["body"] == "Jobs take longer than usual."
        assert all(slack_problem(s.body) is None for s in slacks)
        assert any("stspg.io" in s.json()["blocks"][0]["text"]["text"] for s in slacks)

        listed = await alert_list(stack)
        assert len(listed) == 4
        for item in listed:
            item = await wait_for_status(stack, item["id"], "sent")
            webhook, slack_target = item["deliveries"]
            assert webhook["channel"] == "webhook" and slack_target["channel"] == "slack"
            assert [a["statusCode"] for a in webhook["attempts"]] == [204]
            assert [(a["statusCode"], a["answer"]) for a in slack_target["attempts"]] == [
                (200, "ok")
            ]
            assert "/slack/a" not in slack_target["target"]  # the token part is not shown
        assert len(sink.hits) == 8


async def test_alert_sink_answering_500_twice_gets_it_on_the_third_try(
    clean_database: str, sink: Sink
) -> None:
    sink.fail_next["/hook/b"] = 2
    async with alert_stack(
        clean_database, sink, ALERT_WEBHOOK_URLS=[f"{sink.url}/hook/b"], ALERT_SLACK_URLS=[]
    ) as stack:
        await stack.simulator.statuspage.set_component(ERP_API, "partial_outage")
        [delivered] = await sink.wait_for("/hook/b", 1)
        tries = [h for h in sink.hits if h.path == "/hook/b"]
        assert [h.status for h in tries] == [500, 500, 204]
        # Every retry is the same message: one webhook-id, re-signed each time.
        assert {h.headers["webhook-id"] for h in tries} == {delivered.json()["id"]}
        alert = await wait_for_status(stack, delivered.json()["id"], "sent")
        [webhook] = alert["deliveries"]
        assert [(a["statusCode"], a["answer"]) for a in webhook["attempts"]] == [
            (500, "sink is down"),
            (500, "sink is down"),
            (204, None),
        ]


async def test_flapping_component_gives_one_alert_for_the_window(
    clean_database: str, sink: Sink
) -> None:
    window = 1.0
    async with alert_stack(clean_database, sink, ALERT_FLAP_WINDOW_SECONDS=window) as stack:
        page = stack.simulator.statuspage
        for status in ("major_outage", "operational", "major_outage"):
            assert (await page.set_component(ERP_API, status)).status_code == 200
        [first] = await sink.wait_for("/hook/a", 1)
        assert first.json()["summary"] == "Visma.net ERP API: operational -> major outage"
        # The trailing alert was dropped when the component came back where the first one
        # left it: suppressed alerts are never sent.
        alerts = await alert_list(stack)
        assert sorted(a["status"] for a in alerts) in (
            ["sending", "suppressed"],  # its send answered, not yet recorded
            ["sent", "suppressed"],
        )
        await wait_for_status(stack, first.json()["id"], "sent")
        await asyncio.sleep(window)  # the scenario: the window has to pass
        # After the window a change alerts at once again.
        await page.set_component(ERP_API, "operational")
        hooks = await sink.wait_for("/hook/a", 2)
        assert "operational again" in hooks[1].json()["summary"]
        await wait_for_status(stack, hooks[1].json()["id"], "sent")
        # With the later alert sent, the sender has been past the suppressed one: it never went.
        assert len(sink.delivered("/hook/a")) == 2
        statuses = sorted(a["status"] for a in await alert_list(stack))
        assert statuses == ["sent", "sent", "suppressed"]


async def test_burst_of_failed_jobs_with_the_same_fault_code_is_one_alert(
    clean_database: str, sink: Sink
) -> None:
    async with alert_stack(
        clean_database, sink, ALERT_BURST_WINDOW_SECONDS=1.5, ALERT_SLACK_URLS=[]
    ) as stack:
        stack.simulator.script(Outcome(kind="no_license", times=3))
        jobs = await asyncio.gather(
            *(stack.submit(path="/v1/salesorder", tags={"orderRef": f"SO-{n}"}) for n in range(3))
        )
        for job in jobs:
            assert (await stack.wait_for_end(job["id"]))["state"] == "failed"
        # The job alerts, and the one alert of the issue the three failures make.
        hooks = {h.json()["kind"]: h.json() for h in await sink.wait_for("/hook/a", 3)}
        assert sorted(hooks) == ["issue.opened", "job.failed", "jobs.burst"]
        single, burst, issue = hooks["job.failed"], hooks["jobs.burst"], hooks["issue.opened"]
        assert issue["issue"]["faultCode"] == "12027" and issue["issue"]["hint"] == HINT_NO_LICENSE
        assert single["kind"] == "job.failed"
        job = single["job"]
        assert job["id"] in {j["id"] for j in jobs}
        assert job["path"] == "/v1/salesorder" and job["tags"]["orderRef"].startswith("SO-")
        assert job["error"]["faultCode"] == "12027" and job["hint"] == HINT_NO_LICENSE
        assert burst["kind"] == "jobs.burst"
        assert burst["jobs"]["count"] == 3
        assert set(burst["jobs"]["ids"]) == {j["id"] for j in jobs}
        assert burst["summary"] == "3 jobs failed with fault code 12027 within 1.5 s"
        # Every alert there is has gone out: three, no more to come.
        alerts = await alert_list(stack)
        assert len(alerts) == 3
        for alert in alerts:
            await wait_for_status(stack, alert["id"], "sent")
        assert len(sink.hits) == 3


async def test_a_failed_and_a_rejected_job_are_not_one_burst(
    clean_database: str, sink: Sink
) -> None:
    # Both answer HTTP 400 with no fault code: one failed while running, one was refused at
    # once. Not the same fault, so two alerts of their own, never "2 jobs failed".
    async with alert_stack(
        clean_database, sink, ALERT_BURST_WINDOW_SECONDS=30, ALERT_SLACK_URLS=[]
    ) as stack:
        stack.simulator.script(Outcome(kind="bad_request", fault_code=None, times=1))
        failed = await stack.submit(path="/v1/salesorder")
        assert (await stack.wait_for_end(failed["id"]))["state"] == "failed"
        stack.simulator.script(Outcome(kind="reject", reject_status=400, times=1))
        rejected = await stack.submit(path="/v1/salesorder")
        assert rejected["state"] == "rejected"
        # Two issues as well: a failure and a refusal are not one cause either.
        hooks = [h.json() for h in await sink.wait_for("/hook/a", 4)]
    jobs = [h for h in hooks if h["kind"].startswith("job.")]
    assert sorted(h["kind"] for h in jobs) == ["job.failed", "job.rejected"]
    assert {h["job"]["httpStatus"] for h in jobs} == {400}
    issues = [h["issue"] for h in hooks if h["kind"] == "issue.opened"]
    assert sorted(i["kind"] for i in issues) == ["failed", "rejected"]


async def raise_component_alerts(database_url: str, count: int) -> None:
    """`count` alerts, one per component going down, raised through the status webhook."""
    async with in_process(database_url, STATUS_WEBHOOK_TOKEN=STATUS_TOKEN) as harness:
        page_at = datetime.now(UTC)
        for n in range(count):
            payload = {
                "component": {"id": f"comp-{n}", "name": f"Component {n}"},
                "component_update": {
                    "id": f"update-{n}",
                    "component_id": f"comp-{n}",
                    "old_status": "operational",
                    "new_status": "major_outage",
                    "created_at": page_at.isoformat(),
                },
            }
            response = await harness.client.post(f"/webhooks/status/{STATUS_TOKEN}", json=payload)
            assert response.status_code == 200


def sender(database_url: str, url: str) -> tuple[AlertSender, Any]:
    """A sender with its own engine, as another replica would have."""
    engine = create_engine(database_url)
    outbox = OutboxSettings(webhook_urls=(url,), batch_size=2, retry_base_seconds=0.05)
    return AlertSender(create_sessionmaker(engine), outbox, signing_secret=SIGNING_SECRET), engine


async def test_alert_sender_replicas_send_each_alert_once(clean_database: str, sink: Sink) -> None:
    await raise_component_alerts(clean_database, 8)
    replicas = [sender(clean_database, f"{sink.url}/hook/r") for _ in range(3)]
    try:
        sent = await asyncio.gather(*(s.run_once() for s, _ in replicas))
    finally:
        for s, engine in replicas:
            await s.aclose()
            await engine.dispose()
    assert sum(sent) == 8
    ids = [h.headers["webhook-id"] for h in sink.delivered("/hook/r")]
    assert len(ids) == 8 and len(set(ids)) == 8


async def test_alert_retry_survives_a_restart(clean_database: str, sink: Sink) -> None:
    await raise_component_alerts(clean_database, 1)
    sink.fail_next["/hook/s"] = 1
    first, engine = sender(clean_database, f"{sink.url}/hook/s")
    assert await first.run_once() == 1  # answered 500; the retry time is in the database
    await first.aclose()
    await engine.dispose()
    assert sink.delivered("/hook/s") == []
    second, engine = sender(clean_database, f"{sink.url}/hook/s")
    try:
        # Another process takes the retry from the database once it falls due (0.05 s).
        deadline = asyncio.get_running_loop().time() + 10
        while (sent := await second.run_once()) == 0:
            assert asyncio.get_running_loop().time() < deadline, "the retry never fell due"
            await asyncio.sleep(0.01)
        assert sent == 1
    finally:
        await second.aclose()
        await engine.dispose()
    assert [h.status for h in sink.hits] == [500, 204]
    assert sink.hits[0].headers["webhook-id"] == sink.hits[1].headers["webhook-id"]
