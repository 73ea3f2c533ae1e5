"""The routed-events load: entity events (`CUSTOMER_UPDATED`), each forwarded by the service
to a loopback target (`event_sink.py`) through the outbox.

Reported beside the main load: ingest req/s as for the others, then how long the outbox took
to deliver every acknowledged event to the target after the load stopped, and whether each
one arrived (a delivery acknowledged but never forwarded is a failed run).
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx

from service.visma import signatures
from tests.bench import procs
from tests.bench.loadgen import Delivery

ROUTED_EVENT = "CUSTOMER_UPDATED"
"""The event id every delivery of this load carries (routed by `routes_env`)."""
SIGNING_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def make_event_deliveries(secret: str, count: int) -> list[Delivery]:
    """`count` signed entity-event bodies (illustrative, as the simulator's), naming no job."""
    deliveries = []
    for _ in range(count):
        body = json.dumps(
            {"eventId": ROUTED_EVENT, "entityId": str(uuid.uuid4()), "tenantId": "bench-tenant"},
            separators=(",", ":"),
        ).encode()
        deliveries.append(Delivery(None, signatures.sign(body, secret), body))
    return deliveries


def routes_env(sink_url: str) -> dict[str, str]:
    """The service settings that route the load's event to the sink."""
    return {
        "EVENT_ROUTES": json.dumps({"CUSTOMER_*": [f"{sink_url}/forward/crm"]}),
        "EVENT_ALLOWED_HOSTS": "127.0.0.1",
        "EVENT_SIGNING_SECRET": SIGNING_SECRET,
    }


@dataclass
class Forwarded:
    received: int
    """Notifications of the run the target received."""
    drain_seconds: float
    """From the end of the load until the target had them all (or the wait gave up)."""


def wait_forwarded(sink_url: str, prefix: str, expected: int, *, timeout: float) -> Forwarded:
    """Wait until the sink received `expected` notifications of the run `prefix`."""
    started = time.monotonic()
    received = 0
    while time.monotonic() - started < timeout:
        received = received_by(sink_url, prefix)
        if received >= expected:
            break
        time.sleep(0.2)
    return Forwarded(received, time.monotonic() - started)


def received_by(sink_url: str, prefix: str) -> int:
    answer = httpx.get(f"{sink_url}/count", params={"prefix": prefix}, timeout=10).json()
    return int(answer["received"])


@contextlib.contextmanager
def sink() -> Iterator[procs.Server]:
    """The target, as a process of its own."""
    port = procs.free_port()
    command = [sys.executable, "-m", "tests.bench.event_sink", "--port", str(port)]
    with procs.running(command, {}, port, "/count") as server:
        yield server
