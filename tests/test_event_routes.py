"""Visma's events routed to the team's targets, end to end over loopback: the simulator's
dispatcher sends entity events (signed like every delivery) to the service, which stores them
and forwards each routed one through the outbox to a real target server (the sink verifies the
Standard Webhooks signature with the `standardwebhooks` library). Both databases."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from service import store
from service.cli import main
from service.domain import LINK_RULES, InvalidInput, compile_routes, redact_url
from service.settings import Settings
from service.store import DeliveryRecord, IngestWriter, Stored, is_sqlite
from service.visma import signatures
from service.web.webhooks import delivery_record
from tests.conftest import API_TOKEN, WEBHOOK_SECRET, make_settings
from tests.harness import signed_delivery
from tests.sink import SIGNING_SECRET, Sink
from tests.stack import Stack, running_stack
from tests.test_e2e_replicas import free_port, start_replica, wait_healthy

pytestmark = pytest.mark.e2e
FAILING = {"kind": "events.forward_failing"}


def routed(sink: Sink, routes: dict[str, list[str]], **extra: Any) -> dict[str, Any]:
    """Settings that route events to the sink, retried fast."""
    return {
        "EVENT_ROUTES": json.dumps(routes),
        "EVENT_ALLOWED_HOSTS": ["127.0.0.1"],
        "EVENT_SIGNING_SECRET": SIGNING_SECRET,
        "ALERT_POLL_SECONDS": 0.05,
        "ALERT_RETRY_BASE_SECONDS": 0.05,
        "ALERT_RETRY_MAX_SECONDS": 0.2,
        **extra,
    }


async def send_event(stack: Stack, event_id: str, **fields: Any) -> str:
    """Have the simulated dispatcher send an entity event; its notification id."""
    async with httpx.AsyncClient(base_url=stack.simulator_url) as sim:
        response = await sim.post("/_sim/events", json={"eventId": event_id, **fields})
    assert response.status_code == 202, response.text
    notification_id: str = response.json()["notificationId"]
    return notification_id


async def stored(stack: Stack, notification_id: str, *, timeout: float = 10.0) -> dict[str, Any]:
    """The inbox delivery of a notification, once the service has stored it."""
    deadline = time.monotonic() + timeout
    while True:
        items = await stack.inbox(notificationId=notification_id)
        if items:
            return items[0]
        assert time.monotonic() < deadline, f"notification {notification_id} never stored"
        await asyncio.sleep(0.05)


async def delivery(stack: Stack, delivery_id: str) -> dict[str, Any]:
    response = await stack.api.get(f"/api/v1/deliveries/{delivery_id}")
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


async def forwards_settled(stack: Stack, delivery_id: str, *, timeout: float = 10.0) -> Any:
    """The delivery's forwards once none is pending any more."""
    deadline = time.monotonic() + timeout
    while True:
        data = await delivery(stack, delivery_id)
        if data["forwards"] and all(f["state"] != "pending" for f in data["forwards"]):
            return data["forwards"]
        assert time.monotonic() < deadline, f"forwards still pending: {data['forwards']}"
        await asyncio.sleep(0.05)


async def test_a_routed_event_reaches_its_target_once_signed(
    clean_database: str, sink: Sink
) -> None:
    target = f"{sink.url}/hook/crm"
    async with running_stack(clean_database, **routed(sink, {"CUSTOMER_*": [target]})) as stack:
        notification_id = await send_event(stack, "CUSTOMER_CREATED", tenant="sim-tenant")
        [hit] = await sink.wait_for("/hook/crm", 1)
        inbox = await stored(stack, notification_id)
        [forward] = await forwards_settled(stack, inbox["id"])
        await asyncio.sleep(0.3)  # nothing more comes
    assert hit.status == 204  # the sink verified the signature with standardwebhooks
    assert len(sink.hits) == 1
    assert hit.headers["visma-event-id"] == "CUSTOMER_CREATED"
    assert hit.headers["visma-tenant-id"] == "sim-tenant"
    assert hit.headers["visma-notification-id"] == notification_id
    assert hit.headers["content-type"] == "application/json"
    assert hit.body.decode() == inbox["body"]  # verbatim
    assert json.loads(hit.body)["eventId"] == "CUSTOMER_CREATED"
    assert forward["target"] == redact_url(target)  # shown as alert targets are
    assert forward["state"] == "sent"
    assert [a["statusCode"] for a in forward["attempts"]] == [204]
    assert inbox["eventId"] == "CUSTOMER_CREATED"


async def test_a_repeated_notification_is_forwarded_once(clean_database: str, sink: Sink) -> None:
    target = f"{sink.url}/hook/once"
    async with running_stack(
        clean_database, **routed(sink, {"CUSTOMER_UPDATED": [target]})
    ) as stack:
        notification_id = await send_event(stack, "CUSTOMER_UPDATED", copies=3)
        await sink.wait_for("/hook/once", 1)
        inbox = await stored(stack, notification_id)
        await forwards_settled(stack, inbox["id"])
        await asyncio.sleep(0.5)  # the dispatcher's other copies came and were duplicates
        sent = [a for a in stack.simulator.deliveries if a.notification_id == notification_id]
        copies = await stack.inbox(notificationId=notification_id)
    assert len([a for a in sent if a.ok]) == 3  # each copy acknowledged (the repeats as such)
    assert len(copies) == 1
    assert len(sink.delivered("/hook/once")) == 1


async def test_an_unrouted_event_is_stored_and_listed_only(clean_database: str, sink: Sink) -> None:
    target = f"{sink.url}/hook/customers"
    async with running_stack(clean_database, **routed(sink, {"CUSTOMER_*": [target]})) as stack:
        notification_id = await send_event(stack, "INVENTORY_ITEM_UPDATED")
        inbox = await stored(stack, notification_id)
        listed = await stack.inbox(event="INVENTORY_ITEM_UPDATED")
        others = await stack.inbox(event="CUSTOMER_CREATED")
        shown = await delivery(stack, inbox["id"])
        await asyncio.sleep(0.3)
    assert [d["notificationId"] for d in listed] == [notification_id]
    assert others == []
    assert shown["forwards"] == []
    assert sink.hits == []


async def test_a_target_that_fails_then_recovers_gets_the_event(
    clean_database: str, sink: Sink
) -> None:
    target = f"{sink.url}/hook/flaky"
    sink.fail_next["/hook/flaky"] = 2
    async with running_stack(
        clean_database, **routed(sink, {"SUPPLIER_CREATED": [target]})
    ) as stack:
        notification_id = await send_event(stack, "SUPPLIER_CREATED")
        [hit] = await sink.wait_for("/hook/flaky", 1)
        inbox = await stored(stack, notification_id)
        [forward] = await forwards_settled(stack, inbox["id"])
    assert [h.status for h in sink.hits] == [500, 500, 204]
    # Every attempt carried the same webhook-id: the receiver can drop repeats.
    assert len({h.headers["webhook-id"] for h in sink.hits}) == 1
    assert forward["state"] == "sent"
    assert [a["statusCode"] for a in forward["attempts"]] == [500, 500, 204]


async def test_a_target_answering_410_is_not_tried_again(clean_database: str, sink: Sink) -> None:
    gone, live = f"{sink.url}/hook/gone", f"{sink.url}/hook/live"
    sink.gone.add("/hook/gone")
    async with running_stack(
        clean_database, **routed(sink, {"ACCOUNT_UPDATED": [gone, live]})
    ) as stack:
        notification_id = await send_event(stack, "ACCOUNT_UPDATED")
        await sink.wait_for("/hook/live", 1)
        inbox = await stored(stack, notification_id)
        forwards = await forwards_settled(stack, inbox["id"])
        await asyncio.sleep(0.5)  # retries would come within this
    states = {f["target"]: f["state"] for f in forwards}
    assert states == {redact_url(gone): "gone", redact_url(live): "sent"}
    assert len([h for h in sink.hits if h.path == "/hook/gone"]) == 1


async def test_the_background_answer_can_be_routed_too(clean_database: str, sink: Sink) -> None:
    target = f"{sink.url}/hook/raw"
    async with running_stack(
        clean_database, **routed(sink, {"BACKGROUND_API_RESPONSE": [target]})
    ) as stack:
        job = await stack.submit(body={"name": "Acme"})
        await stack.wait_for_end(job["id"])
        [hit] = await sink.wait_for("/hook/raw", 1)
    assert hit.headers["visma-event-id"] == "BACKGROUND_API_RESPONSE"
    assert hit.status == 204


def test_event_routes_are_checked_at_start(clean_database: str) -> None:
    secret = {"EVENT_SIGNING_SECRET": SIGNING_SECRET}
    with pytest.raises(ValueError, match="must use https"):
        make_settings(clean_database, EVENT_ROUTES='{"X": ["http://10.0.0.1/hook"]}', **secret)
    with pytest.raises(ValueError, match="JSON object"):
        make_settings(clean_database, EVENT_ROUTES='{"X": "https://a.example"}', **secret)
    with pytest.raises(ValueError, match="not JSON"):
        make_settings(clean_database, EVENT_ROUTES="{nope", **secret)
    with pytest.raises(ValueError, match="EVENT_SIGNING_SECRET is empty"):
        make_settings(clean_database, EVENT_ROUTES='{"X": ["https://a.example/h"]}')
    settings: Settings = make_settings(
        clean_database,
        EVENT_ROUTES='{"X": ["http://10.0.0.1/hook"]}',
        EVENT_ALLOWED_HOSTS="10.0.0.1",
        **secret,
    )
    assert settings.EVENT_ROUTES == {"X": ["http://10.0.0.1/hook"]}


def test_routes_match_exact_ids_and_globs_each_target_once() -> None:
    routes = compile_routes(
        {
            "CUSTOMER_CREATED": ["https://a.example/1"],
            "CUSTOMER_*": ["https://a.example/1", "https://b.example/2"],
            "*_INVOICE_*": ["https://c.example/3"],
        }
    )
    assert routes.targets_for("CUSTOMER_CREATED") == ("https://a.example/1", "https://b.example/2")
    assert routes.targets_for("CUSTOMER_UPDATED") == ("https://a.example/1", "https://b.example/2")
    assert routes.targets_for("SUPPLIER_INVOICE_STATUS_CHANGED") == ("https://c.example/3",)
    assert routes.targets_for("customer_created") == ()
    assert routes.targets_for("CUSTOMER.CREATED") == ()  # a dot is no wildcard
    assert routes.targets_for(None) == ()
    assert routes.label_for("CUSTOMER_CREATED") == "CUSTOMER_CREATED"
    assert routes.label_for("CUSTOMER_UPDATED") == "CUSTOMER_*"
    assert routes.label_for("SOMETHING_NEW") == "other"
    assert routes.label_for("BACKGROUND_API_RESPONSE") == "BACKGROUND_API_RESPONSE"
    with pytest.raises(InvalidInput, match="must use https"):
        compile_routes({"X": ["http://a.example/h"]})


def signed_event(event_id: str, notification_id: str, body: bytes) -> dict[str, str]:
    """A dispatcher delivery's headers for an entity event, signed with the test secret."""
    return {
        "content-type": "application/json",
        signatures.SIGNATURE_HEADER: signatures.sign(body, WEBHOOK_SECRET),
        signatures.NOTIFICATION_ID_HEADER: notification_id,
        signatures.EVENT_ID_HEADER: event_id,
        signatures.TENANT_ID_HEADER: "sim-tenant",
    }


async def test_two_replicas_forward_each_event_once(
    clean_database: str, sink: Sink, tmp_path: Path
) -> None:
    if is_sqlite(clean_database):
        pytest.skip("replicas share a PostgreSQL database; SQLite runs in one process")
    events = 40
    targets = [f"{sink.url}/hook/replica-a", f"{sink.url}/hook/replica-b"]
    env = {
        "EVENT_ROUTES": json.dumps({"CUSTOMER_*": targets}),
        "EVENT_ALLOWED_HOSTS": "127.0.0.1",
        "EVENT_SIGNING_SECRET": SIGNING_SECRET,
        "ALERT_POLL_SECONDS": "0.05",
    }
    ports = [free_port(), free_port()]
    replicas = [
        start_replica(
            clean_database, "http://127.0.0.1:9", port, tmp_path / f"r{n}.log", extra_env=env
        )
        for n, port in enumerate(ports)
    ]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        await asyncio.gather(*(wait_healthy(u, p) for u, p in zip(urls, replicas, strict=True)))
        async with httpx.AsyncClient(timeout=30) as client:
            # Each notification reaches both replicas at once (the dispatcher's repeat).
            posts = []
            for n in range(events):
                body = json.dumps({"eventId": "CUSTOMER_UPDATED", "n": n}).encode()
                headers = signed_event("CUSTOMER_UPDATED", f"replica-note-{n}", body)
                posts += [
                    client.post(f"{url}/webhooks/visma", content=body, headers=headers)
                    for url in urls
                ]
            answers = await asyncio.gather(*posts)
        assert all(a.status_code == 200 for a in answers), answers[0].text
        assert sorted(a.json()["status"] for a in answers).count("stored") == events
        for path in ("/hook/replica-a", "/hook/replica-b"):
            await sink.wait_for(path, events, timeout=30)
        await asyncio.sleep(1.0)  # a second send would come within this
    finally:
        for replica in replicas:
            replica.send_signal(signal.SIGTERM)
        for replica in replicas:
            replica.wait(timeout=20)
    for path in ("/hook/replica-a", "/hook/replica-b"):
        hits = [h for h in sink.hits if h.path == path]
        assert len(hits) == events, f"{path}: {len(hits)} sends for {events} events"
        assert len({h.headers["visma-notification-id"] for h in hits}) == events
        assert all(h.status == 204 for h in hits)


async def test_stored_deliveries_are_counted_by_event(clean_database: str, sink: Sink) -> None:
    target = f"{sink.url}/hook/metrics"
    async with running_stack(clean_database, **routed(sink, {"CUSTOMER_*": [target]})) as stack:
        before = await event_counts(stack)
        for event_id in ("CUSTOMER_CREATED", "CUSTOMER_UPDATED", "NEVER_HEARD_OF_IT_1"):
            await stored(stack, await send_event(stack, event_id))
        after = await event_counts(stack)
    assert after.get("CUSTOMER_*", 0) - before.get("CUSTOMER_*", 0) == 2
    assert after.get("other", 0) - before.get("other", 0) == 1
    assert not any("NEVER_HEARD_OF_IT" in label for label in after)


async def event_counts(stack: Stack) -> dict[str, float]:
    """`visma_hooks_deliveries_total` per event label, as /metrics shows it."""
    text = (await stack.api.get("/metrics")).text
    counts: dict[str, float] = {}
    for line in text.splitlines():
        match = re.match(r'visma_hooks_deliveries_total\{event="([^"]*)"\} (\S+)', line)
        if match:
            counts[match[1]] = float(match[2])
    return counts


async def test_a_target_failing_every_attempt_raises_a_diagnostic(
    clean_database: str, sink: Sink
) -> None:
    target = f"{sink.url}/hook/down"
    sink.fail_next["/hook/down"] = 1000
    settings = routed(sink, {"EMPLOYEE_UPDATED": [target]}, ALERT_FORWARD_FAILING_MINUTES=0.01)
    async with running_stack(clean_database, **settings) as stack:
        await send_event(stack, "EMPLOYEE_UPDATED")
        deadline = time.monotonic() + 15
        while True:
            response = await stack.api.get(
                "/api/v1/alerts", params={"kind": "events.forward_failing"}
            )
            alerts = response.json()["items"]
            if alerts or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)  # further failures of the same run raise nothing more
        response = await stack.api.get("/api/v1/alerts", params=FAILING)
    [alert] = response.json()["items"]
    assert alert["target"] == redact_url(target)
    assert "failed every attempt" in alert["summary"]


async def test_the_inbox_page_filters_by_event_and_shows_each_forward(
    clean_database: str, sink: Sink
) -> None:
    target = f"{sink.url}/hook/page"
    async with running_stack(clean_database, **routed(sink, {"CUSTOMER_*": [target]})) as stack:
        routed_id = await send_event(stack, "CUSTOMER_CREATED")
        other_id = await send_event(stack, "DIMENSION_UPDATED")
        inbox = await stored(stack, routed_id)
        await stored(stack, other_id)
        await forwards_settled(stack, inbox["id"])
        async with httpx.AsyncClient(base_url=stack.service_url) as browser:
            login = await browser.post("/login", data={"token": API_TOKEN, "next": "/inbox"})
            assert login.status_code == 303, login.text
            page = (await browser.get("/inbox", params={"event": "CUSTOMER_CREATED"})).text
            everything = (await browser.get("/inbox")).text
    assert inbox["id"] in page
    assert "DIMENSION_UPDATED</code>" not in page
    assert "DIMENSION_UPDATED</code>" in everything
    assert f"{redact_url(target)}</code> sent" in page
    assert 'data-refresh="/inbox?partial=1&amp;event=CUSTOMER_CREATED"' in page


async def test_simulate_send_event_has_the_running_simulator_send_it(
    clean_database: str, sink: Sink, capsys: pytest.CaptureFixture[str]
) -> None:
    target = f"{sink.url}/hook/cli"
    async with running_stack(clean_database, **routed(sink, {"SALES_ORDER_*": [target]})) as stack:
        host, port = stack.simulator_url.removeprefix("http://").split(":")
        argv = ["simulate", "--host", host, "--port", port]
        argv += ["--send-event", "SALES_ORDER_CREATED:sim-tenant"]
        status = await asyncio.to_thread(main, argv)
        [hit] = await sink.wait_for("/hook/cli", 1)
    assert status == 0
    printed = capsys.readouterr().out
    assert f"notification {hit.headers['visma-notification-id']}" in printed
    assert hit.headers["visma-event-id"] == "SALES_ORDER_CREATED"


def test_simulate_send_event_says_when_no_simulator_answers(
    capsys: pytest.CaptureFixture[str],
) -> None:
    port = str(free_port())
    assert main(["simulate", "--port", port, "--send-event", "CUSTOMER_CREATED"]) == 1
    assert "no simulator answers" in capsys.readouterr().err


def event_record(event_id: str, notification_id: str | None = None) -> DeliveryRecord:
    body = json.dumps({"eventId": event_id}).encode()
    raw, headers = signed_delivery(body, notification_id=notification_id)
    headers = {**headers, signatures.EVENT_ID_HEADER: event_id}
    return delivery_record(headers, raw)


async def queued_forwards(sessions: Any) -> list[tuple[str | None, str]]:
    async with sessions.begin() as session:
        rows = await session.execute(
            select(store.AlertDelivery.inbox_delivery_id, store.AlertDelivery.target).where(
                store.AlertDelivery.channel == store.FORWARD
            )
        )
        return sorted((row[0], row[1]) for row in rows)


async def test_the_writer_queues_forwards_with_new_deliveries_only_even_one_by_one(
    clean_database: str,
) -> None:
    routes = compile_routes({"CUSTOMER_*": ["https://a.example/1", "https://b.example/2"]})
    engine = store.create_engine(clean_database)
    woken: list[bool] = []
    ingest = IngestWriter(
        engine, rules=LINK_RULES, routes=routes, on_forwarded=lambda: woken.append(True)
    )
    sessions = store.create_sessionmaker(engine)
    await ingest.start()
    try:
        earlier = event_record("CUSTOMER_CREATED")
        assert await ingest.store(earlier) is True
        good = event_record("CUSTOMER_UPDATED")
        unrouted = event_record("DIMENSION_UPDATED")
        # The primary key of a stored row: this batch fails whole and goes one by one.
        bad = dataclasses.replace(event_record("CUSTOMER_UPDATED"), id=earlier.id)
        repeat = event_record("CUSTOMER_CREATED", notification_id=earlier.notification_id)
        outcomes = await ingest.store_many([good, bad, unrouted, repeat])
        forwards = await queued_forwards(sessions)
    finally:
        await ingest.close()
        await engine.dispose()
    assert outcomes == [Stored.NEW, Stored.FAILED, Stored.NEW, Stored.DUPLICATE]
    targets = ["https://a.example/1", "https://b.example/2"]
    assert forwards == sorted([(d.id, t) for d in (earlier, good) for t in targets])
    assert woken == [True, True]


async def test_bad_event_filters_and_ids_answer_4xx_json(clean_database: str) -> None:
    async with running_stack(clean_database) as stack:
        too_long = await stack.api.get("/api/v1/deliveries", params={"event": "X" * 129})
        control = await stack.api.get("/api/v1/deliveries", params={"event": "A\x01B"})
        missing = await stack.api.get("/api/v1/deliveries/no-such-delivery")
    assert too_long.status_code == control.status_code == 400
    assert too_long.json()["error"] == "invalid_input"
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"
