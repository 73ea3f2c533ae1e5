"""The simulated status page: its `/_sim/status/...` controls send Statuspage-format webhooks
that our own parser reads (component updates, incidents with updates, maintenance)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.domain import ComponentChange, IncidentReport, parse_status_payload
from service.simulator import SimulatorConfig, create_simulator_app
from tests.servers import bind_loopback, serving, url_of


class Listener:
    """Records every status webhook it gets."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def receive(self, request: Request) -> Response:
        self.bodies.append(await request.body())
        return Response(status_code=200)


@pytest.fixture(name="listener")
async def fixture_listener() -> AsyncIterator[tuple[Listener, httpx.AsyncClient]]:
    listener = Listener()
    listener_sock, simulator_sock = bind_loopback(), bind_loopback()
    simulator = create_simulator_app(
        SimulatorConfig(status_webhook_url=f"{url_of(listener_sock)}/status/secret")
    )
    async with (
        serving(
            Starlette(routes=[Route("/status/secret", listener.receive, methods=["POST"])]),
            listener_sock,
        ),
        serving(simulator, simulator_sock) as simulator_url,
        httpx.AsyncClient(base_url=simulator_url) as client,
    ):
        yield listener, client


async def control(client: httpx.AsyncClient, path: str, **body: Any) -> dict[str, Any]:
    response = await client.post(f"/_sim/status/{path}", json=body)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    assert data["statusCode"] == 200
    return data


async def test_set_status_component_sends_a_component_update(
    listener: tuple[Listener, httpx.AsyncClient],
) -> None:
    received, client = listener
    await control(client, "components", component="Visma.net ERP API", status="major_outage")
    await control(client, "components", component="Visma.net ERP API", status="operational")
    first = json.loads(received.bodies[0])
    assert set(first) == {"meta", "page", "component", "component_update"}
    assert first["page"]["status_indicator"] == "critical"
    assert set(first["meta"]) == {"unsubscribe", "documentation", "generated_at"}
    events = [parse_status_payload(body)[0] for body in received.bodies]
    assert all(isinstance(e, ComponentChange) for e in events)
    down, up = events
    assert isinstance(down, ComponentChange) and isinstance(up, ComponentChange)
    assert (down.old_status, down.new_status) == ("operational", "major_outage")
    assert (up.old_status, up.new_status) == ("major_outage", "operational")
    assert up.at > down.at and up.component_id == down.component_id


async def test_set_status_incident_sends_the_incident_with_all_its_updates(
    listener: tuple[Listener, httpx.AsyncClient],
) -> None:
    received, client = listener
    opened = await control(
        client,
        "incidents",
        name="Slow background jobs",
        status="investigating",
        body="Looking into it.",
        components=["Visma.net ERP API"],
    )
    incident_id = opened["payload"]["incident"]["id"]
    await control(
        client, "incidents", name="Slow background jobs", status="resolved", id=incident_id
    )
    resolved, problem = parse_status_payload(received.bodies[-1])
    assert problem is None and isinstance(resolved, IncidentReport)
    assert resolved.id == incident_id and resolved.status == "resolved"
    assert resolved.resolved_at is not None
    assert [u.status for u in resolved.updates] == ["resolved", "investigating"]
    assert [c.name for c in resolved.components] == ["Visma.net ERP API"]
    # A repeat is the same bytes' worth of JSON again.
    again = await control(client, "resend", index=opened["index"])
    assert again["payload"] == opened["payload"]
    assert json.loads(received.bodies[-1]) == opened["payload"]


async def test_schedule_status_maintenance_sends_a_maintenance_incident(
    listener: tuple[Listener, httpx.AsyncClient],
) -> None:
    received, client = listener
    await control(
        client,
        "maintenance",
        name="Database upgrade",
        scheduledFor="2026-03-08T22:00:00Z",
        scheduledUntil="2026-03-09T02:00:00Z",
        components=["Visma.net ERP API"],
    )
    maintenance, problem = parse_status_payload(received.bodies[-1])
    assert problem is None and isinstance(maintenance, IncidentReport)
    assert maintenance.is_maintenance and maintenance.status == "scheduled"
    assert maintenance.impact == "maintenance"
    assert maintenance.scheduled_for is not None and maintenance.scheduled_for.hour == 22
    sent = (await client.get("/_sim/status/sent")).json()["items"]
    assert [s["statusCode"] for s in sent] == [200]


@pytest.mark.parametrize(
    ("path", "body", "detail"),
    [
        ("components", {"component": "Nope", "status": "major_outage"}, "no component 'Nope'"),
        ("components", {"component": "Visma Connect", "status": "on_fire"}, "unknown component"),
        ("incidents", {"name": "x"}, "status is required"),
        ("maintenance", {"name": "x", "components": []}, "scheduledFor and scheduledUntil"),
        ("resend", {"index": 99}, "index must be"),
    ],
)
async def test_status_controls_refuse_bad_requests(
    path: str, body: dict[str, Any], detail: str
) -> None:
    # In-process (no lifespan): a refused request never gets as far as sending.
    app = create_simulator_app(SimulatorConfig(status_webhook_url="http://127.0.0.1:9/x"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sim") as client:
        response = await client.post(f"/_sim/status/{path}", json=body)
    assert response.status_code == 400
    assert detail in response.json()["detail"]
    assert app.state.simulator.statuspage.sent == []
