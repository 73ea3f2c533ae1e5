"""One alert target that never answers, one that does, over real HTTP: each target has its own
lane, so the healthy one gets every alert at once while the hanging one is cut off at its
timeout and retried (sends used to be gathered in batches that waited for the slowest)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from tests.sink import SIGNING_SECRET, Sink
from tests.stack import Stack, running_stack

STATUS_TOKEN = "status-token-lanes"
TIMEOUT_SECONDS = 5.0
ALERTS = 30


class StalledServer:
    """Accepts connections and reads what comes, never answering."""

    def __init__(self) -> None:
        self.connections = 0
        self.url = ""
        self._open: list[asyncio.StreamWriter] = []

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._open.append(writer)
        with contextlib.suppress(ConnectionError):
            while await reader.read(65536):
                pass

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[StalledServer]:
        server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/hook"
        try:
            yield self
        finally:
            for writer in self._open:
                writer.close()
            server.close()
            await server.wait_closed()


async def raise_alerts(stack: Stack, count: int) -> None:
    """`count` component alerts, one component each, through the status webhook."""
    for n in range(count):
        payload: dict[str, Any] = {
            "component": {"id": f"lane-{n}", "name": f"Component {n}"},
            "component_update": {
                "id": f"lane-update-{n}",
                "component_id": f"lane-{n}",
                "old_status": "operational",
                "new_status": "major_outage",
                "created_at": "2026-03-02T09:00:00.000Z",
            },
        }
        response = await stack.api.post(f"/webhooks/status/{STATUS_TOKEN}", json=payload)
        assert response.status_code == 200, response.text


async def stalled_attempts(stack: Stack, target: str) -> list[dict[str, Any]]:
    """Every recorded attempt at `target` (the API shows it masked: its origin stays)."""
    origin = target.removesuffix("/hook")
    response = await stack.api.get("/api/v1/alerts", params={"pageSize": "500"})
    assert response.status_code == 200, response.text
    return [
        attempt
        for alert in response.json()["items"]
        for delivery in alert["deliveries"]
        if delivery["target"].startswith(origin + "/")
        for attempt in delivery["attempts"]
    ]


async def test_a_hanging_target_never_delays_another_targets_alerts(
    clean_database: str, sink: Sink
) -> None:
    async with (
        StalledServer().running() as stalled,
        running_stack(
            clean_database,
            STATUS_WEBHOOK_TOKEN=STATUS_TOKEN,
            ALERT_WEBHOOK_URLS=[stalled.url, f"{sink.url}/hook/healthy"],
            ALERT_SIGNING_SECRET=SIGNING_SECRET,
            ALERT_TIMEOUT_SECONDS=TIMEOUT_SECONDS,
            ALERT_TARGET_CONCURRENCY=2,
            ALERT_POLL_SECONDS=0.05,
            ALERT_RETRY_BASE_SECONDS=0.05,
            ALERT_FLAP_WINDOW_SECONDS=0,
            ALERT_BURST_WINDOW_SECONDS=0,
        ) as stack,
    ):
        started = time.monotonic()
        await raise_alerts(stack, ALERTS)
        raised = time.monotonic()
        await sink.wait_for("/hook/healthy", ALERTS, timeout=TIMEOUT_SECONDS * 3)
        took = time.monotonic() - raised
        assert took < TIMEOUT_SECONDS / 2, f"{took:.2f} s after the last alert was raised"
        # The hanging target holds its lane only: two sends at a time, none answered yet.
        assert stalled.connections == 2
        assert await stalled_attempts(stack, stalled.url) == []
        # Each attempt is cut off at the timeout and retried as before.
        deadline = time.monotonic() + TIMEOUT_SECONDS * 3
        while len(attempts := await stalled_attempts(stack, stalled.url)) < 2:
            assert time.monotonic() < deadline, "the hanging target's sends never timed out"
            await asyncio.sleep(0.05)
        assert time.monotonic() - started >= TIMEOUT_SECONDS
        assert all(a["statusCode"] is None and a["error"] for a in attempts)
        while stalled.connections < 3:
            assert time.monotonic() < deadline, "the hanging target was not tried again"
            await asyncio.sleep(0.05)


async def test_a_hanging_callback_target_never_delays_alerts(
    clean_database: str, sink: Sink
) -> None:
    """Callbacks go through the same outbox: a team's callbackUrl that hangs (here in the TLS
    handshake) holds its own lane, and the alerts go out meanwhile."""
    async with (
        StalledServer().running() as stalled,
        running_stack(
            clean_database,
            STATUS_WEBHOOK_TOKEN=STATUS_TOKEN,
            ALERT_WEBHOOK_URLS=[f"{sink.url}/hook/healthy"],
            ALERT_SIGNING_SECRET=SIGNING_SECRET,
            CALLBACK_SIGNING_SECRET=SIGNING_SECRET,
            CALLBACK_ALLOWED_HOSTS=["127.0.0.1"],
            ALERT_TIMEOUT_SECONDS=TIMEOUT_SECONDS,
            ALERT_TARGET_CONCURRENCY=2,
            ALERT_POLL_SECONDS=0.05,
            ALERT_FLAP_WINDOW_SECONDS=0,
            ALERT_BURST_WINDOW_SECONDS=0,
        ) as stack,
    ):
        callback_url = stalled.url.replace("http://", "https://")
        # As many as its lane holds: a send cut off at shutdown would leave its socket behind.
        jobs = [await stack.submit(callbackUrl=callback_url) for _ in range(2)]
        for job in jobs:
            await stack.wait_for_end(job["id"])
        deadline = time.monotonic() + TIMEOUT_SECONDS
        while stalled.connections < 2:
            assert time.monotonic() < deadline, "no callback reached the hanging target"
            await asyncio.sleep(0.02)
        await raise_alerts(stack, ALERTS)
        raised = time.monotonic()
        await sink.wait_for("/hook/healthy", ALERTS, timeout=TIMEOUT_SECONDS * 3)
        took = time.monotonic() - raised
        assert took < TIMEOUT_SECONDS / 2, f"{took:.2f} s after the last alert was raised"
        assert stalled.connections == 2  # its lane: two at a time
        # Cut off at the timeout, recorded and due again (ALERT_RETRY_BASE_SECONDS later).
        deadline = time.monotonic() + TIMEOUT_SECONDS * 3
        while True:
            shown = [(await stack.job(job["id"]))["callback"] for job in jobs]
            attempts = [a for callback in shown for a in callback["attempts"]]
            if len(attempts) >= 2:
                break
            assert time.monotonic() < deadline, "the hanging callbacks never timed out"
            await asyncio.sleep(0.05)
        assert all(a["statusCode"] is None and a["error"] for a in attempts)
        assert all(callback["nextAttemptAt"] for callback in shown)  # to be tried again
