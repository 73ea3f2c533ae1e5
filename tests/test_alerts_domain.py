"""Pure decisions: parsing status-page payloads (real and hand-written), noise windows,
summaries, the Slack message and the retry schedule."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from service.domain import (
    AlertKind,
    AlertPolicy,
    BurstAction,
    ComponentChange,
    FlapAction,
    IncidentReport,
    SendOutcome,
    Window,
    burst_key,
    burst_summary,
    component_summary,
    decide_burst,
    decide_flap,
    incident_summary,
    job_summary,
    parse_status_payload,
    retry_delay,
    send_outcome,
    slack_message,
)
from service.domain.status import (
    PROBLEM_NOT_JSON,
    PROBLEM_NOT_OBJECT,
    PROBLEM_UNKNOWN_SHAPE,
)

FIXTURES = Path(__file__).parent / "fixtures"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def test_parse_status_payload_reads_a_real_component_update() -> None:
    event, problem = parse_status_payload(
        fixture_bytes("real-statuspage/component_status_update.json")
    )
    assert problem is None
    assert event == ComponentChange(
        component_id="sqm6pl84wzjc",
        name="Database component",
        group_id=None,
        update_id="nd963wv4j30b",
        old_status="operational",
        new_status="under_maintenance",
        at=datetime(2017, 12, 26, 7, 59, 9, 379000, tzinfo=UTC),
    )


def test_parse_status_payload_reads_a_real_incident_created_and_resolved() -> None:
    created, problem = parse_status_payload(fixture_bytes("real-statuspage/incident_created.json"))
    assert problem is None and isinstance(created, IncidentReport)
    assert (created.id, created.name, created.status) == (
        "z3lct0r596n4",
        "Database query delays",
        "identified",
    )
    assert created.impact == "none" and not created.is_maintenance
    assert created.shortlink == "http://stspg.io/646947c1e"
    assert [(c.id, c.name) for c in created.components] == [
        ("zvdm6f7gf76j", "Management Portal (example)")
    ]
    assert [u.id for u in created.updates] == ["qm8bgczn0p2n"]

    resolved, problem = parse_status_payload(fixture_bytes("real-statuspage/incident_update.json"))
    assert problem is None and isinstance(resolved, IncidentReport)
    assert resolved.id == created.id and resolved.status == "resolved"
    assert resolved.resolved_at == datetime(2017, 12, 26, 7, 37, 20, 785000, tzinfo=UTC)
    assert resolved.updated_at > created.updated_at
    # Newest update first, whatever order the page listed them in.
    assert [u.status for u in resolved.updates] == ["resolved", "identified"]


def test_parse_status_payload_reads_the_hand_written_examples() -> None:
    component, _ = parse_status_payload(fixture_bytes("status-component-update.json"))
    assert isinstance(component, ComponentChange)
    assert (component.name, component.group_id, component.new_status) == (
        "Visma.net ERP API",
        "g1h2j3k4l5m6",
        "degraded_performance",
    )
    incident, _ = parse_status_payload(fixture_bytes("status-incident-created.json"))
    assert isinstance(incident, IncidentReport) and incident.status == "investigating"
    maintenance, problem = parse_status_payload(fixture_bytes("status-maintenance-scheduled.json"))
    assert problem is None and isinstance(maintenance, IncidentReport)
    assert maintenance.is_maintenance and maintenance.status == "scheduled"
    assert maintenance.scheduled_for == datetime(2026, 3, 8, 22, tzinfo=UTC)
    assert maintenance.scheduled_until == datetime(2026, 3, 9, 2, tzinfo=UTC)
    assert [c.name for c in maintenance.components] == ["Visma.net ERP API"]


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"<html>hello</html>", PROBLEM_NOT_JSON),
        (b"[1, 2]", PROBLEM_NOT_OBJECT),
        (b'{"meta": {}, "page": {"id": "x"}}', PROBLEM_UNKNOWN_SHAPE),
        (b'{"component": {"id": "c1", "status": "operational"}}', "without a timestamp"),
        (
            b'{"component_update": {"component_id": "c1", "new_status": "on_fire",'
            b' "created_at": "2026-03-02T09:00:00Z"}}',
            "unknown component status 'on_fire'",
        ),
        (b'{"incident": {"id": "i1", "updated_at": "2026-03-02T09:00:00Z"}}', "without a status"),
        (
            b'{"incident": {"id": "i1", "status": "exploded", "updated_at": "2026-03-02T09:00Z"}}',
            "unknown incident status",
        ),
    ],
)
def test_parse_status_payload_names_the_problem_of_an_unusable_body(
    body: bytes, problem: str
) -> None:
    event, found = parse_status_payload(body)
    assert event is None
    assert found is not None and problem in found


def test_alert_policy_watches_by_id_or_name_and_all_when_empty() -> None:
    assert AlertPolicy().watches([("any", None)])
    policy = AlertPolicy(watch_components=("visma.net erp api", "t1s2r3q4p5o6"))
    assert policy.watches([("k8m2n4p6q8r0", "Visma.net ERP API")])
    assert policy.watches([("t1s2r3q4p5o6", "Visma Connect")])
    assert not policy.watches([("c3d4e5f6g7h8", "Visma.net ERP UI")])
    assert not policy.watches([])


def run_flaps(changes: list[tuple[str, int]], *, window_seconds: float = 300) -> list[FlapAction]:
    """The actions for a component moving through `changes` ((status, seconds after T0))."""
    window, previous, actions = Window(), "operational", []
    for status, seconds in changes:
        decision = decide_flap(
            window,
            previous=previous,
            new=status,
            at=T0 + timedelta(seconds=seconds),
            window_seconds=window_seconds,
        )
        window, previous = decision.window, status
        actions.append(decision.action)
    return actions


def test_decide_flap_outage_operational_outage_in_a_window_is_one_alert() -> None:
    actions = run_flaps([("major_outage", 0), ("operational", 30), ("major_outage", 60)])
    # The trailing alert held by the recovery is dropped: the outage is what people were told.
    assert actions == [FlapAction.RAISE, FlapAction.HOLD, FlapAction.DROP]


def test_decide_flap_a_recovery_in_the_window_is_held_for_the_window_end() -> None:
    assert run_flaps([("partial_outage", 0), ("operational", 30)]) == [
        FlapAction.RAISE,
        FlapAction.HOLD,
    ]


def test_decide_flap_changes_after_the_window_alert_at_once() -> None:
    actions = run_flaps([("major_outage", 0), ("operational", 301), ("major_outage", 700)])
    assert actions == [FlapAction.RAISE, FlapAction.RAISE, FlapAction.RAISE]
    # Off: every transition alerts.
    assert (
        run_flaps([("major_outage", 0), ("operational", 1), ("major_outage", 2)], window_seconds=0)
        == [FlapAction.RAISE] * 3
    )


def test_decide_flap_staying_down_is_not_a_transition() -> None:
    actions = run_flaps([("degraded_performance", 0), ("major_outage", 600)])
    assert actions == [FlapAction.RAISE, FlapAction.NONE]


def test_decide_burst_counts_same_fault_failures_within_the_window() -> None:
    window = Window()
    actions = []
    for n, seconds in enumerate([0, 10, 20, 400]):
        decision = decide_burst(
            window, subject=f"job-{n}", at=T0 + timedelta(seconds=seconds), window_seconds=300
        )
        window = decision.window
        actions.append(decision.action)
        if n == 2:
            assert window.count == 3 and window.subjects == ("job-0", "job-1", "job-2")
    assert actions == [BurstAction.SINGLE, BurstAction.GROUP, BurstAction.GROUP, BurstAction.SINGLE]
    assert window.count == 1 and window.subjects == ("job-3",)


def test_burst_key_groups_by_fault_code_first() -> None:
    assert burst_key(state="failed", fault_code="12027", http_status=400) == "faultCode=12027"
    assert burst_key(state="rejected", fault_code="12027", http_status=500) == "faultCode=12027"
    assert burst_key(state="failed", fault_code=None, http_status=400) == "failed:httpStatus=400"
    # Refused at once and failed while running are not the same fault, whatever the status.
    assert burst_key(state="rejected", fault_code=None, http_status=400) != burst_key(
        state="failed", fault_code=None, http_status=400
    )
    assert burst_key(state="expired", fault_code=None, http_status=None) == "state=expired"


def test_summaries_read_as_one_line() -> None:
    assert (
        job_summary(
            AlertKind.JOB_FAILED,
            method="POST",
            path="/v1/salesorder",
            error="No license for this company.",
            fault_code="12027",
        )
        == "Job failed: POST /v1/salesorder: No license for this company. (fault 12027)"
    )
    assert "outcome is unknown" in job_summary(
        AlertKind.JOB_EXPIRED, method="POST", path="/v1/x", error=None, fault_code=None
    )
    assert (
        burst_summary("faultCode=12027", count=7, window_seconds=300)
        == "7 jobs failed with fault code 12027 within 5 min"
    )
    assert (
        component_summary("ERP API", previous="operational", new="major_outage")
        == "ERP API: operational -> major outage"
    )
    assert (
        component_summary(
            "ERP API", previous="major_outage", new="operational", changes=2, window_seconds=60
        )
        == "ERP API is operational again (was major outage); changed 2 times within 60 s"
    )
    assert (
        incident_summary("Slow API", previous=None, status="investigating", maintenance=False)
        == "Incident opened: Slow API (investigating)"
    )
    assert (
        incident_summary("Slow API", previous="monitoring", status="resolved", maintenance=False)
        == "Incident resolved: Slow API"
    )
    assert incident_summary(
        "DB upgrade",
        previous=None,
        status="scheduled",
        maintenance=True,
        scheduled_for=datetime(2026, 3, 8, 22, tzinfo=UTC),
    ) == ("Maintenance scheduled for 2026-03-08 22:00 UTC: DB upgrade")


def test_slack_message_has_text_and_escaped_blocks() -> None:
    alert = {
        "id": "a1",
        "kind": "job.failed",
        "summary": "Job failed: POST /v1/x: <b>&</b>",
        "at": "2026-03-02T09:00:00Z",
        "job": {
            "id": "j1",
            "method": "POST",
            "path": "/v1/x",
            "tags": {"orderRef": "SO-1"},
            "error": {"message": "No license for this company.", "faultCode": "12027"},
            "hint": "Check the role.",
        },
    }
    message = slack_message(alert)
    # The fallback text is mrkdwn too: outside text in it is escaped as in the blocks.
    assert message["text"] == "Job failed: POST /v1/x: &lt;b&gt;&amp;&lt;/b&gt;"
    section = message["blocks"][0]["text"]["text"]
    assert "&lt;b&gt;&amp;&lt;/b&gt;" in section and "<b>" not in section
    assert "*Tags:* orderRef=SO-1" in section and "(fault 12027)" in section
    assert "*Hint:* Check the role." in section
    json.dumps(message)  # plain JSON


def test_slack_message_of_a_deeply_nested_value_is_cut_not_a_recursion_error() -> None:
    deep: list[object] = []
    inner = deep
    for _ in range(100_000):
        child: list[object] = []
        inner.append(child)
        inner = child
    alert = {"id": "a2", "kind": "job.failed", "job": {"id": "j2", "error": {"message": deep}}}
    section = slack_message(alert)["blocks"][0]["text"]["text"]
    assert "*Error:* [[[[" in section
    assert len(section) <= 3000 and section.endswith("…")


def test_send_outcome_and_retry_delay() -> None:
    assert send_outcome(204, attempts=1, max_attempts=3) is SendOutcome.SENT
    assert send_outcome(302, attempts=1, max_attempts=3) is SendOutcome.RETRY
    assert send_outcome(None, attempts=2, max_attempts=3) is SendOutcome.RETRY
    assert send_outcome(500, attempts=3, max_attempts=3) is SendOutcome.FAILED
    delays = [retry_delay(n, base_seconds=10, max_seconds=60) for n in range(1, 6)]
    assert delays == [10, 20, 40, 60, 60]
    assert retry_delay(1, base_seconds=10, max_seconds=60, retry_after=30) == 30
