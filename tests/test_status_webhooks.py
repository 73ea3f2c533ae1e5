"""`POST /webhooks/status/{token}` and the status and alert lists, on a real database.

These run in-process (no sender): they show what is stored, what current state becomes, and
which alerts are raised. `test_e2e_alerts.py` shows the alerts reaching real HTTP sinks.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from service import store
from service.domain import AlertPolicy, JobState, Outcome, VismaErrorInfo
from service.domain.status import PROBLEM_NOT_JSON, PROBLEM_UNKNOWN_SHAPE
from service.flows.outcomes import record_outcome
from service.web.status_webhooks import NOT_FOUND
from tests.factories import insert_job
from tests.harness import Harness, in_process

FIXTURES = Path(__file__).parent / "fixtures"
TOKEN = "status-token-3f9a"
ERP_API = "k8m2n4p6q8r0"


@pytest.fixture(name="harness")
async def fixture_harness(clean_database: str):
    async with in_process(
        clean_database, STATUS_WEBHOOK_TOKEN=TOKEN, ALERT_FLAP_WINDOW_SECONDS=0
    ) as harness:
        yield harness


def fixture_payload(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


def stamp(at: datetime) -> str:
    """Statuspage's form: milliseconds and a Z."""
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def api_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def component_update(
    status: str,
    at: datetime,
    *,
    old: str = "operational",
    component: str = ERP_API,
    name: str | None = None,
) -> dict[str, Any]:
    """The hand-written component update, moved to `status` at `at`, with a fresh update id."""
    payload = fixture_payload("status-component-update.json")
    payload["component"].update(
        id=component, status=status, updated_at=stamp(at), name=name or "Visma.net ERP API"
    )
    payload["component_update"].update(
        id=uuid.uuid4().hex[:12],
        component_id=component,
        old_status=old,
        new_status=status,
        created_at=stamp(at),
    )
    return payload


async def post_status(harness: Harness, payload: Any, *, token: str = TOKEN) -> dict[str, Any]:
    content = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    response = await harness.client.post(f"/webhooks/status/{token}", content=content)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


async def get_items(harness: Harness, path: str, **params: str) -> list[dict[str, Any]]:
    response = await harness.client.get(path, params={"pageSize": "500", **params})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def alerts(harness: Harness, **params: str) -> list[dict[str, Any]]:
    return await get_items(harness, "/api/v1/alerts", **params)


async def test_receive_status_webhook_wrong_or_unset_token_is_404_and_stores_nothing(
    clean_database: str,
) -> None:
    payload = json.dumps(fixture_payload("status-component-update.json")).encode()
    async with in_process(clean_database, STATUS_WEBHOOK_TOKEN=TOKEN) as harness:
        for token in ("wrong", TOKEN + "x", TOKEN[:-1]):
            response = await harness.client.post(f"/webhooks/status/{token}", content=payload)
            assert response.status_code == 404
            assert response.json() == {"error": "not_found", "detail": NOT_FOUND}
    async with in_process(clean_database) as harness:  # no token set: the endpoint is off
        response = await harness.client.post(f"/webhooks/status/{TOKEN}", content=payload)
        assert response.status_code == 404
        assert await get_items(harness, "/api/v1/deliveries") == []
        assert await get_items(harness, "/api/v1/status/components") == []


async def test_receive_status_webhook_applies_a_component_update(harness: Harness) -> None:
    answer = await post_status(harness, fixture_payload("status-component-update.json"))
    assert answer["status"] == "stored" and answer["event"] == "component_update"
    assert answer["changed"] is True and answer["problem"] is None
    [delivery] = await get_items(harness, "/api/v1/deliveries", kind="status")
    assert delivery["id"] == answer["deliveryId"] and delivery["eventId"] == "component_update"
    assert delivery["problem"] is None and not delivery["matched"]
    [component] = await get_items(harness, "/api/v1/status/components")
    assert component == {
        "id": ERP_API,
        "name": "Visma.net ERP API",
        "groupId": "g1h2j3k4l5m6",
        "status": "degraded_performance",
        "updatedAt": "2026-03-02T09:14:52.210000Z",
    }
    [alert] = await alerts(harness)
    assert alert["kind"] == "component.status"
    assert alert["summary"] == "Visma.net ERP API: operational -> degraded performance"
    assert alert["component"] == component and alert["at"] == component["updatedAt"]
    assert alert["status"] == "queued" and alert["deliveries"] == []


async def test_receive_status_webhook_repeated_and_stale_deliveries_change_nothing(
    harness: Harness,
) -> None:
    t0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    outage = component_update("major_outage", t0 + timedelta(minutes=1))
    recovery = component_update("operational", t0 + timedelta(minutes=20), old="major_outage")
    late = component_update("partial_outage", t0, old="operational")
    assert (await post_status(harness, outage))["changed"] is True
    assert (await post_status(harness, recovery))["changed"] is True
    assert (await post_status(harness, outage))["changed"] is False  # a repeat
    assert (await post_status(harness, late))["changed"] is False  # older than what we know
    [component] = await get_items(harness, "/api/v1/status/components", component=ERP_API)
    assert component["status"] == "operational"
    assert component["updatedAt"] == "2026-03-02T09:20:00Z"
    # Every delivery is in the inbox; the history keeps each update once, the late one too.
    assert len(await get_items(harness, "/api/v1/deliveries", kind="status")) == 4
    history = [(h["newStatus"], h["applied"]) for h in component["history"]]
    assert history == [("operational", True), ("major_outage", True), ("partial_outage", False)]
    # One alert per transition, none for the repeat or the late update.
    assert [a["summary"] for a in await alerts(harness)] == [
        "Visma.net ERP API is operational again (was major outage)",
        "Visma.net ERP API: operational -> major outage",
    ]


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"this is not json", PROBLEM_NOT_JSON),
        (b'{"meta": {"generated_at": "2026-03-02T09:00:00Z"}, "page": {}}', PROBLEM_UNKNOWN_SHAPE),
    ],
)
async def test_receive_status_webhook_stores_an_unknown_shape_flagged(
    harness: Harness, body: bytes, problem: str
) -> None:
    answer = await post_status(harness, body)
    assert answer == {
        "status": "flagged",
        "deliveryId": answer["deliveryId"],
        "event": None,
        "changed": False,
        "problem": problem,
    }
    [delivery] = await get_items(harness, "/api/v1/deliveries", kind="status")
    assert delivery["problem"] == problem and delivery["body"] == body.decode()
    assert await alerts(harness) == []


async def test_receive_status_webhook_refuses_a_body_over_the_limit(clean_database: str) -> None:
    async with in_process(clean_database, STATUS_WEBHOOK_TOKEN=TOKEN, MAX_BODY_BYTES=100) as h:
        response = await h.client.post(f"/webhooks/status/{TOKEN}", content=b"x" * 101)
        assert response.status_code == 413
        assert await get_items(h, "/api/v1/deliveries") == []


async def test_receive_status_webhook_real_incident_created_resolved_then_late(
    harness: Harness,
) -> None:
    created = fixture_payload("real-statuspage/incident_created.json")
    resolved = fixture_payload("real-statuspage/incident_update.json")
    assert (await post_status(harness, created))["changed"] is True
    assert (await post_status(harness, resolved))["changed"] is True
    assert (await post_status(harness, created))["changed"] is False  # arrives again, late
    [incident] = await get_items(harness, "/api/v1/status/incidents")
    assert incident["status"] == "resolved"
    assert incident["resolvedAt"] == "2017-12-26T07:37:20.785000Z"
    assert incident["shortlink"] == "http://stspg.io/646947c1e"
    assert incident["components"] == [{"id": "zvdm6f7gf76j", "name": "Management Portal (example)"}]
    assert [(u["id"], u["status"]) for u in incident["updates"]] == [
        ("cdwfdrjlp53y", "resolved"),
        ("qm8bgczn0p2n", "identified"),
    ]
    raised = await alerts(harness, kind="incident.update")
    assert [a["summary"] for a in raised] == [
        "Incident resolved: Database query delays",
        "Incident opened: Database query delays (identified)",
    ]
    assert raised[0]["incident"]["shortlink"] == "http://stspg.io/646947c1e"


async def test_list_incidents_filters_by_status_and_component(harness: Harness) -> None:
    await post_status(harness, fixture_payload("status-incident-created.json"))
    await post_status(harness, fixture_payload("status-maintenance-scheduled.json"))
    await post_status(harness, fixture_payload("real-statuspage/incident_created.json"))
    path = "/api/v1/status/incidents"
    [maintenance] = await get_items(harness, path, status="scheduled")
    assert maintenance["name"] == "Planned database upgrade"
    assert maintenance["scheduledFor"] == "2026-03-08T22:00:00Z"
    assert maintenance["scheduledUntil"] == "2026-03-09T02:00:00Z"
    by_name = await get_items(harness, path, component="visma.net erp api")
    assert {i["id"] for i in by_name} == {"i9h8g7f6e5d4", "m3n4b5v6c7x8"}
    by_id = await get_items(harness, path, component="zvdm6f7gf76j")
    assert [i["id"] for i in by_id] == ["z3lct0r596n4"]
    both = await get_items(harness, path, status="investigating,identified")
    assert {i["id"] for i in both} == {"i9h8g7f6e5d4", "z3lct0r596n4"}
    page = await harness.client.get(path, params={"pageSize": "1", "pageNumber": "2"})
    assert page.json()["metadata"] == {
        "totalCount": 3,
        "maxPageSize": 500,
        "pageNumber": 2,
        "pageSize": 1,
    }
    assert len(page.json()["items"]) == 1
    for params, detail in (
        ({"status": "on_fire"}, "status 'on_fire' is not one of"),
        ({"colour": "red"}, "unknown query parameter 'colour'"),
    ):
        response = await harness.client.get(path, params=params)
        assert response.status_code == 400
        assert detail in response.json()["detail"]


async def test_list_components_filters_by_status_and_component(harness: Harness) -> None:
    now = datetime.now(UTC)
    await post_status(harness, component_update("major_outage", now))
    await post_status(
        harness, component_update("operational", now, component="c2", name="Visma Connect")
    )
    path = "/api/v1/status/components"
    [down] = await get_items(harness, path, status="major_outage,partial_outage")
    assert down["id"] == ERP_API and "history" not in down
    [connect] = await get_items(harness, path, component="VISMA CONNECT")
    assert connect["status"] == "operational" and len(connect["history"]) == 1
    response = await harness.client.get(path, params={"status": "investigating"})
    assert response.status_code == 400


async def test_receive_status_webhook_alerts_only_for_watched_components(
    clean_database: str,
) -> None:
    async with in_process(
        clean_database, STATUS_WEBHOOK_TOKEN=TOKEN, WATCH_COMPONENTS=["Visma.net ERP API"]
    ) as harness:
        # Components and incidents of other components are kept, but raise nothing.
        await post_status(harness, fixture_payload("real-statuspage/component_status_update.json"))
        await post_status(harness, fixture_payload("real-statuspage/incident_created.json"))
        assert await alerts(harness) == []
        assert len(await get_items(harness, "/api/v1/status/incidents")) == 1
        await post_status(harness, fixture_payload("status-component-update.json"))
        await post_status(harness, fixture_payload("status-maintenance-scheduled.json"))
        kinds = sorted(a["kind"] for a in await alerts(harness))
        assert kinds == ["component.status", "incident.update"]
        [maintenance] = await alerts(harness, kind="incident.update")
        assert maintenance["summary"] == (
            "Maintenance scheduled for 2026-03-08 22:00 UTC: Planned database upgrade"
        )


async def test_receive_status_webhook_holds_one_alert_for_a_flapping_component(
    clean_database: str,
) -> None:
    async with in_process(
        clean_database, STATUS_WEBHOOK_TOKEN=TOKEN, ALERT_FLAP_WINDOW_SECONDS=300
    ) as harness:
        now = datetime.now(UTC)
        await post_status(harness, component_update("major_outage", now))
        await post_status(harness, component_update("operational", now + timedelta(seconds=5)))
        [held, first] = await alerts(harness)
        assert first["status"] == "queued"
        assert held["status"] == "held"  # waits for the window to close
        assert held["summary"].startswith("Visma.net ERP API is operational again")
        outage_at = now.replace(microsecond=now.microsecond // 1000 * 1000)  # as sent, in ms
        assert api_time(held["dueAt"]) == outage_at + timedelta(seconds=300)
        await post_status(harness, component_update("major_outage", now + timedelta(seconds=9)))
        [dropped, first] = await alerts(harness)
        # Down again, as the first alert said: the held one is dropped.
        assert dropped["id"] == held["id"] and dropped["status"] == "suppressed"
        assert first["status"] == "queued"


async def add_job(harness: Harness, job_id: str) -> None:
    await insert_job(
        harness.resources.sessions, id=job_id, path="/v1/salesorder", tags={"orderRef": job_id}
    )


async def fail_job(harness: Harness, job_id: str, fault_code: str, *, policy: AlertPolicy) -> bool:
    error = VismaErrorInfo(type="IPPException", message="No license.", fault_code=fault_code)
    outcome = Outcome(state=JobState.FAILED, http_status=400, error=error, hint="Check the role.")
    async with harness.resources.sessions.begin() as session:
        job = await store.get_job(session, job_id, for_update=True)
        assert job is not None
        return await record_outcome(
            session, job, outcome, source="poll", at=datetime.now(UTC), alerts=policy
        )


async def test_record_outcome_raises_one_alert_per_transition_and_groups_bursts(
    harness: Harness,
) -> None:
    policy = AlertPolicy(burst_window_seconds=300)
    for n in range(4):
        await add_job(harness, f"job-{n}")
    assert await fail_job(harness, "job-0", "12027", policy=policy)
    assert not await fail_job(harness, "job-0", "12027", policy=policy)  # repeated: no move
    assert await fail_job(harness, "job-1", "12027", policy=policy)
    assert await fail_job(harness, "job-2", "12027", policy=policy)
    assert await fail_job(harness, "job-3", "10000", policy=policy)
    raised = await alerts(harness)
    # Two causes, two issues: each opened once, however many of its jobs failed.
    opened = [a["issue"]["faultCode"] for a in raised if a["kind"] == "issue.opened"]
    assert sorted(opened) == ["10000", "12027"]
    by_kind = {
        (a["kind"], a.get("job", {}).get("id")): a for a in raised if a["kind"] != "issue.opened"
    }
    assert set(by_kind) == {
        ("job.failed", "job-0"),
        ("jobs.burst", "job-2"),
        ("job.failed", "job-3"),
    }
    single = by_kind[("job.failed", "job-0")]
    assert single["summary"] == "Job failed: POST /v1/salesorder: No license. (fault 12027)"
    assert single["job"]["tags"] == {"orderRef": "job-0"}
    assert single["job"]["error"]["faultCode"] == "12027"
    assert single["job"]["hint"] == "Check the role." and single["status"] == "queued"
    burst = by_kind[("jobs.burst", "job-2")]
    assert burst["jobs"] == {"ids": ["job-0", "job-1", "job-2"], "count": 3}
    assert burst["summary"] == "3 jobs failed with fault code 12027 within 5 min"
    assert burst["status"] == "held"


async def test_receive_status_webhook_component_alert_links_its_open_incident(
    harness: Harness,
) -> None:
    await post_status(harness, fixture_payload("status-incident-created.json"))
    await post_status(harness, fixture_payload("status-component-update.json"))
    [alert] = await alerts(harness, kind="component.status")
    assert alert["component"]["status"] == "degraded_performance"
    assert alert["incident"]["name"] == "Slow background API processing"
    assert alert["incident"]["shortlink"] == "https://stspg.io/abc123"
    assert alert["incident"]["status"] == "investigating"


@pytest.mark.parametrize(
    ("state", "kind", "summary"),
    [
        (
            JobState.EXPIRED,
            "job.expired",
            "Job expired: POST /v1/salesorder: Visma no longer knows it; the outcome is unknown",
        ),
        (JobState.REJECTED, "job.rejected", "Job rejected by Visma: POST /v1/salesorder"),
        (JobState.SUCCEEDED, None, None),
    ],
)
async def test_record_outcome_raises_the_alert_of_each_end_state(
    harness: Harness, state: JobState, kind: str | None, summary: str | None
) -> None:
    await add_job(harness, "job-x")
    async with harness.resources.sessions.begin() as session:
        job = await store.get_job(session, "job-x", for_update=True)
        assert job is not None
        outcome = Outcome(state=state, http_status=None)
        await record_outcome(
            session, job, outcome, source="poll", at=datetime.now(UTC), alerts=AlertPolicy()
        )
    raised = await alerts(harness)
    jobs = [a for a in raised if a["kind"] != "issue.opened"]
    assert [(a["kind"], a["summary"]) for a in jobs] == ([(kind, summary)] if kind else [])
    if kind:
        assert jobs[0]["job"]["state"] == state
    # An end that is no success opens its issue too.
    issues = [a["issue"]["kind"] for a in raised if a["kind"] == "issue.opened"]
    assert issues == ([state.value] if kind else [])


async def test_receive_status_webhook_resolution_naming_no_components_still_alerts(
    clean_database: str,
) -> None:
    async with in_process(
        clean_database, STATUS_WEBHOOK_TOKEN=TOKEN, WATCH_COMPONENTS=["Visma.net ERP API"]
    ) as harness:
        opened = fixture_payload("status-incident-created.json")
        await post_status(harness, opened)
        resolved = json.loads(json.dumps(opened))
        incident = resolved["incident"]
        incident["status"] = "resolved"
        incident["updated_at"] = incident["resolved_at"] = "2026-03-02T10:00:00.000Z"
        incident["components"] = []  # the resolving update names no component
        incident["incident_updates"] = [
            {
                **incident["incident_updates"][0],
                "id": "res1",
                "status": "resolved",
                "body": "Fixed.",
                "created_at": "2026-03-02T10:00:00.000Z",
                "affected_components": [],
            }
        ]
        await post_status(harness, resolved)
        summaries = [a["summary"] for a in await alerts(harness, kind="incident.update")]
        assert len(summaries) == 2
        assert any("resolved" in s.lower() for s in summaries)
