"""A status-page update dated far ahead of our clock, over real HTTP: kept and flagged, ordered
by when it arrived, so the real updates after it still apply (one dated 2099 froze a component).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.stack import running_stack
from tests.test_status_webhooks import ERP_API, component_update, fixture_payload, stamp

TOKEN = "status-token-skew"
SKEW_SECONDS = 300


def when(text: str) -> datetime:
    return datetime.fromisoformat(text)


async def post_status(api: httpx.AsyncClient, payload: dict[str, Any]) -> dict[str, Any]:
    response = await api.post(f"/webhooks/status/{TOKEN}", content=json.dumps(payload).encode())
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


async def component(api: httpx.AsyncClient) -> dict[str, Any]:
    response = await api.get("/api/v1/status/components", params={"component": ERP_API})
    assert response.status_code == 200, response.text
    [item] = response.json()["items"]
    data: dict[str, Any] = item
    return data


async def test_a_2099_update_is_flagged_and_later_real_updates_apply(
    clean_database: str,
) -> None:
    async with running_stack(
        clean_database, STATUS_WEBHOOK_TOKEN=TOKEN, STATUS_CLOCK_SKEW_SECONDS=SKEW_SECONDS
    ) as stack:
        future = datetime(2099, 1, 1, tzinfo=UTC)
        answer = await post_status(stack.api, component_update("major_outage", future))
        assert answer["changed"] is True  # it is news, as of when it arrived
        shown = await component(stack.api)
        assert shown["status"] == "major_outage"
        [flagged] = shown["history"]
        assert flagged["futureDated"] is True and flagged["at"].startswith("2099-01-01")
        assert when(shown["updatedAt"]) <= datetime.now(UTC)  # our receipt time

        real = datetime.now(UTC)
        answer = await post_status(
            stack.api, component_update("operational", real, old="major_outage")
        )
        assert answer["changed"] is True
        shown = await component(stack.api)
        assert shown["status"] == "operational"
        assert when(shown["updatedAt"]) == when(stamp(real))
        assert [c["futureDated"] for c in shown["history"]] == [True, False]


async def test_an_update_a_little_ahead_within_the_skew_orders_by_its_own_time(
    clean_database: str,
) -> None:
    async with running_stack(
        clean_database, STATUS_WEBHOOK_TOKEN=TOKEN, STATUS_CLOCK_SKEW_SECONDS=SKEW_SECONDS
    ) as stack:
        ahead = datetime.now(UTC) + timedelta(seconds=SKEW_SECONDS / 2)
        await post_status(stack.api, component_update("partial_outage", ahead))
        shown = await component(stack.api)
        assert when(shown["updatedAt"]) == when(stamp(ahead))
        assert shown["history"][0]["futureDated"] is False
        # An update stamped before it (though after our clock) is older: it changes nothing.
        earlier = ahead - timedelta(seconds=10)
        answer = await post_status(stack.api, component_update("operational", earlier))
        assert answer["changed"] is False
        assert (await component(stack.api))["status"] == "partial_outage"


async def test_a_future_dated_incident_is_flagged_and_its_later_update_applies(
    clean_database: str,
) -> None:
    async with running_stack(
        clean_database, STATUS_WEBHOOK_TOKEN=TOKEN, STATUS_CLOCK_SKEW_SECONDS=SKEW_SECONDS
    ) as stack:
        payload = fixture_payload("status-incident-created.json")
        payload["incident"]["updated_at"] = "2099-01-01T00:00:00.000Z"
        await post_status(stack.api, payload)
        [incident] = (await stack.api.get("/api/v1/status/incidents")).json()["items"]
        assert incident["futureDated"] is True and when(incident["updatedAt"]) <= datetime.now(UTC)
        later = fixture_payload("status-incident-created.json")
        later["incident"].update(status="resolved", updated_at=stamp(datetime.now(UTC)))
        await post_status(stack.api, later)
        response = await stack.api.get("/api/v1/status/incidents")
        [incident] = response.json()["items"]
        assert incident["status"] == "resolved" and incident["futureDated"] is False
