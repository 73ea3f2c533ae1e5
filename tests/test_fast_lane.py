"""`POST /webhooks/visma` is routed past Starlette's router (web/fast_lane.py): what a user
of the route sees must not change. Other methods still get the router's 405, a crash still gets
the JSON 500, an outage the 503, and a service under a root path still takes its deliveries."""

from __future__ import annotations

import httpx
import pytest

from tests.harness import Harness, in_process, signed_delivery


@pytest.fixture(name="harness")
async def fixture_harness(clean_database: str):
    async with in_process(clean_database) as harness:
        yield harness


async def test_other_methods_on_the_webhook_path_get_the_routers_405(harness: Harness) -> None:
    response = await harness.client.get("/webhooks/visma")

    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.json()["error"] == "method_not_allowed"


async def test_a_crash_in_the_webhook_endpoint_answers_a_json_500(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken_store(*_args: object) -> tuple[bool, bool]:
        raise RuntimeError("a bug")

    monkeypatch.setattr(harness.resources.ingest, "store_linking", broken_store)
    body, headers = signed_delivery(job_id="job-1", notification_id="n-crash")
    transport = httpx.ASGITransport(app=harness.app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.post("/webhooks/visma", content=body, headers=headers)

    assert response.status_code == 500
    assert response.json()["error"] == "internal_error"


async def test_a_database_outage_in_the_webhook_endpoint_answers_503_to_retry(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The app maps OSError (a database refusing connections) to 503 + Retry-After: so does
    the fast lane, with the same handler."""

    async def refused(*_args: object) -> tuple[bool, bool]:
        raise ConnectionRefusedError("database refuses connections")

    monkeypatch.setattr(harness.resources.ingest, "store_linking", refused)
    body, headers = signed_delivery(job_id="job-1", notification_id="n-outage")
    response = await harness.client.post("/webhooks/visma", content=body, headers=headers)

    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.json()["error"] == "unavailable"


async def test_a_service_under_a_root_path_takes_deliveries(harness: Harness) -> None:
    body, headers = signed_delivery(job_id="job-1", notification_id="n-root")
    transport = httpx.ASGITransport(app=harness.app, root_path="/hooks")
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.post("/hooks/webhooks/visma", content=body, headers=headers)

    assert response.status_code == 200
    assert response.json()["status"] == "stored"
    listed = await harness.client.get("/api/v1/deliveries", params={"notificationId": "n-root"})
    assert [d["notificationId"] for d in listed.json()["items"]] == ["n-root"]
