"""Diagnostics end to end: silent webhooks and failing signatures raise their alerts, which
reach a real sink, and the dashboard's health panel shows them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from service.domain import (
    bad_signatures_alarm,
    recent_failures,
    webhooks_went_silent,
)
from tests.conftest import API_TOKEN
from tests.harness import signed_delivery
from tests.sink import SIGNING_SECRET, Sink, running_sink
from tests.stack import running_stack

pytestmark = pytest.mark.e2e


@pytest.fixture(name="sink")
async def fixture_sink() -> AsyncIterator[Sink]:
    async with running_sink() as sink:
        yield sink


def alert_settings(sink: Sink) -> dict[str, object]:
    return {
        "ALERT_WEBHOOK_URLS": [f"{sink.url}/hook/a"],
        "ALERT_SLACK_URLS": [f"{sink.url}/slack/a"],
        "ALERT_SIGNING_SECRET": SIGNING_SECRET,
        "ALERT_POLL_SECONDS": 0.05,
        "ALERT_BURST_WINDOW_SECONDS": 0,
    }


async def health_panel(service_url: str) -> str:
    async with httpx.AsyncClient(base_url=service_url) as browser:
        await browser.post("/login", data={"token": API_TOKEN})
        return (await browser.get("/", params={"partial": "1"})).text


async def alert_kinds(stack) -> list[str]:
    answer = await stack.api.get("/api/v1/alerts")
    return [alert["kind"] for alert in answer.json()["items"]]


async def wait_for_signature_count(service_url: str, count: int) -> None:
    """Until the health panel counts `count` failed signature checks (recorded once a second)."""
    shown = f'<p class="figure">{count}</p>'
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        panel = await health_panel(service_url)
        signatures = panel.split('id="panel-signatures"', 1)[1].split("</section>", 1)[0]
        if shown in signatures:
            return
        assert asyncio.get_running_loop().time() < deadline, signatures
        await asyncio.sleep(0.1)


async def test_jobs_resolved_only_by_polling_raise_webhooks_silent(
    clean_database: str, sink: Sink
) -> None:
    async with running_stack(
        clean_database,
        chaos={"webhook_drop_share": 1.0},
        POLL_AFTER_SECONDS=0.2,
        ALERT_SILENT_AFTER_JOBS=3,
        **alert_settings(sink),
    ) as stack:
        for n in range(4):  # one by one: each finishes before the next, all by polling
            job = await stack.submit(path="/v1/customer", tags={"n": str(n)})
            ended = await stack.wait_for_end(job["id"])
            assert ended["state"] == "succeeded" and ended["resolvedBy"] == "poll"
        (hook,) = await sink.wait_for("/hook/a", 1)
        (slack,) = await sink.wait_for("/slack/a", 1)
        alert = hook.json()
        assert alert["kind"] == "webhooks.silent"
        assert "last 3 jobs were all resolved by polling" in alert["summary"]
        checks = " ".join(alert["check"])
        assert "Developer Portal" in checks and "secret" in checks and "App Store" in checks
        assert "App Store" in slack.body.decode()
        # Alerts are raised with the outcome: the fourth job's raised none.
        assert await alert_kinds(stack) == ["webhooks.silent"]
        panel = await health_panel(stack.service_url)
        assert "seem silent" in panel


async def test_failed_signature_checks_raise_webhooks_bad_signatures_once(
    clean_database: str, sink: Sink
) -> None:
    async with running_stack(
        clean_database,
        ALERT_BAD_SIGNATURES=5,
        ALERT_BAD_SIGNATURES_WINDOW_SECONDS=300,
        **alert_settings(sink),
    ) as stack:
        async with httpx.AsyncClient(base_url=stack.service_url) as dispatcher:
            for _ in range(4):
                body, headers = signed_delivery(secret="an-old-secret")
                answer = await dispatcher.post("/webhooks/visma", content=body, headers=headers)
                assert answer.status_code == 401
            await wait_for_signature_count(stack.service_url, 4)
            assert await alert_kinds(stack) == []
            for _ in range(6):
                body, headers = signed_delivery(secret="an-old-secret")
                await dispatcher.post("/webhooks/visma", content=body, headers=headers)
        (hook,) = await sink.wait_for("/hook/a", 1)
        alert = hook.json()
        assert alert["kind"] == "webhooks.bad_signatures"
        assert alert["signatureFailures"] == {"count": 10, "windowSeconds": 300}
        assert "VISMA_WEBHOOK_SECRETS" in alert["summary"]
        await sink.wait_for("/slack/a", 1)
        panel = await health_panel(stack.service_url)
        assert "a rotated or mistyped secret?" in panel
        async with httpx.AsyncClient(base_url=stack.service_url) as dispatcher:
            body, headers = signed_delivery(secret="an-old-secret")
            await dispatcher.post("/webhooks/visma", content=body, headers=headers)
        await wait_for_signature_count(stack.service_url, 11)
        # One alert per window, not one per failure.
        assert await alert_kinds(stack) == ["webhooks.bad_signatures"]


def test_silence_is_a_streak_of_polls_told_once() -> None:
    assert webhooks_went_silent(["poll"] * 5, after_jobs=5)
    assert webhooks_went_silent(["poll"] * 5 + ["webhook"], after_jobs=5)
    assert not webhooks_went_silent(["poll"] * 6, after_jobs=5)  # told at the fifth already
    assert not webhooks_went_silent(["poll"] * 4 + ["webhook"], after_jobs=5)
    assert not webhooks_went_silent(["poll"] * 4, after_jobs=5)
    assert not webhooks_went_silent(["poll"] * 5, after_jobs=0)


def test_bad_signatures_count_inside_the_window_only() -> None:
    now = datetime(2026, 12, 1, 12, tzinfo=UTC)
    old = [now - timedelta(seconds=400)] * 9
    fresh = [now - timedelta(seconds=10)]
    times = recent_failures(old, fresh, now=now, window_seconds=300)
    assert times == fresh
    assert not bad_signatures_alarm(times, now=now, threshold=2, quiet_until=None)
    times = recent_failures(times, fresh, now=now, window_seconds=300)
    assert bad_signatures_alarm(times, now=now, threshold=2, quiet_until=None)
    assert not bad_signatures_alarm(
        times, now=now, threshold=2, quiet_until=now + timedelta(seconds=1)
    )
