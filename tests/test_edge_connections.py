"""The server's edge against bodies that never end: one client address opens more connections
than MAX_CONNECTIONS_PER_CLIENT, each with a full head to `POST /webhooks/visma` and a chunked
body that stops, while `/healthz` from another address (127.0.0.2) keeps answering within
100 ms; the stalled bodies are cut off after BODY_TIMEOUT_SECONDS, and a TRUSTED_PROXIES
address is not counted. Real server (`service.server.server_config`) over loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest

from tests.harness import signed_delivery
from tests.test_edge_server import answer_of, service

pytestmark = pytest.mark.e2e

ATTACKER = "127.0.0.1"
PROBER = "127.0.0.2"
OTHER = "127.0.0.3"
STALLED_HEAD = (
    b"POST /webhooks/visma HTTP/1.1\r\nHost: service\r\nContent-Type: application/json\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)
FIRST_CHUNK = b"1\r\n{\r\n"


@dataclass
class Probes:
    """`/healthz` asked from another address on a fresh connection, again and again."""

    latencies: list[float] = field(default_factory=list)
    statuses: list[int | str] = field(default_factory=list)

    def check(self, *, within: float = 0.1) -> None:
        assert len(self.latencies) >= 10, "too few probes ran"
        assert all(s == 200 for s in self.statuses), self.statuses
        assert max(self.latencies) < within, f"slowest /healthz: {max(self.latencies):.3f} s"


@contextlib.asynccontextmanager
async def probing(url: str, *, source: str = PROBER) -> AsyncIterator[Probes]:
    probes = Probes()

    async def run() -> None:
        transport = httpx.AsyncHTTPTransport(
            local_address=source, limits=httpx.Limits(max_keepalive_connections=0)
        )
        async with httpx.AsyncClient(base_url=url, transport=transport, timeout=5.0) as client:
            while True:
                started = time.monotonic()
                try:
                    status: int | str = (await client.get("/healthz")).status_code
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                probes.latencies.append(time.monotonic() - started)
                probes.statuses.append(status)
                await asyncio.sleep(0.05)

    task = asyncio.create_task(run())
    try:
        yield probes
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@dataclass
class Stalled:
    """One connection whose body stopped: what ended it, and when."""

    body_stopped: float = 0.0
    ended: float | None = None
    status: int | None = None
    error: str | None = None


def host_port(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


async def stall(url: str, source: str, *, wait: float) -> Stalled:
    """Send the head and one chunk of a body that never ends; how the server ended it."""
    host, port = host_port(url)
    me = Stalled()
    reader, writer = await asyncio.open_connection(host, port, local_addr=(source, 0))
    try:
        writer.write(STALLED_HEAD + FIRST_CHUNK)
        await writer.drain()
        me.body_stopped = time.monotonic()
        me.status, body = await asyncio.wait_for(answer_of(reader), wait)
        me.error = body.get("error")
        await asyncio.wait_for(reader.read(), 1)  # and then the connection ends
        me.ended = time.monotonic()
    except (ConnectionError, asyncio.IncompleteReadError):
        me.ended = time.monotonic()
    except TimeoutError:
        pass  # still open
    finally:
        writer.close()
    return me


async def refused_count(url: str, reason: str) -> float:
    async with httpx.AsyncClient(base_url=url) as client:
        text = (await client.get("/metrics")).text
    found = re.search(rf'visma_hooks_connections_refused_total{{reason="{reason}"}} (\S+)', text)
    return float(found.group(1)) if found else 0.0


async def test_serve_cuts_off_stalled_bodies_and_caps_one_address(clean_database: str) -> None:
    timeout = 1.0
    cap = 100
    async with service(
        clean_database, BODY_TIMEOUT_SECONDS=timeout, MAX_CONNECTIONS_PER_CLIENT=cap
    ) as url:
        refused_before = await refused_count(url, "client_limit")
        cut_before = await refused_count(url, "body_timeout")
        async with probing(url) as probes:
            attack = [asyncio.create_task(stall(url, ATTACKER, wait=10)) for _ in range(150)]
            await asyncio.sleep(0.5)
            # One more from the same address, sending nothing: it reads the refusal.
            host, port = host_port(url)
            reader, writer = await asyncio.open_connection(host, port, local_addr=(ATTACKER, 0))
            refusal = await asyncio.wait_for(answer_of(reader), 2)
            writer.close()
            stalled = await asyncio.gather(*attack)
            await asyncio.sleep(0.3)  # probes after the flood, too
        refused_after = await refused_count(url, "client_limit")
        cut_after = await refused_count(url, "body_timeout")
    assert refusal[0] == 429 and refusal[1]["error"] == "too_many_connections", refusal
    assert f"MAX_CONNECTIONS_PER_CLIENT={cap}" in refusal[1]["detail"]
    # The cap's worth were held until their bodies timed out (408), never much later; the
    # other 50 were refused at once (429, or reset when the head they sent met a closed socket).
    cut = [s for s in stalled if s.status == 408]
    turned_away = [s for s in stalled if s.status != 408]
    assert len(cut) == cap, [(s.status, s.error) for s in stalled]
    assert all(s.error == "timeout" for s in cut)
    assert all(s.ended is not None for s in stalled), "a stalled connection stayed open"
    assert all(timeout - 0.1 < s.ended - s.body_stopped < timeout + 0.75 for s in cut), sorted(
        round(s.ended - s.body_stopped, 2) for s in cut
    )
    assert all(s.status in (429, None) for s in turned_away)
    assert all(s.ended - s.body_stopped < timeout / 2 for s in turned_away)
    assert refused_after - refused_before == 51
    assert cut_after - cut_before == cap
    probes.check()


async def test_serve_waits_for_a_body_that_keeps_coming(clean_database: str) -> None:
    # Each chunk starts the timeout again: a body that trickles in over three timeouts is
    # received whole and the signed delivery is stored.
    timeout = 1.0
    body, headers = signed_delivery()
    head = b"POST /webhooks/visma HTTP/1.1\r\nHost: service\r\nTransfer-Encoding: chunked\r\n"
    head += b"".join(f"{k}: {v}\r\n".encode() for k, v in headers.items()) + b"\r\n"
    async with service(clean_database, BODY_TIMEOUT_SECONDS=timeout) as url:
        host, port = host_port(url)
        reader, writer = await asyncio.open_connection(host, port, local_addr=(OTHER, 0))
        started = time.monotonic()
        writer.write(head)
        pieces = [body[i : i + 8] for i in range(0, len(body), 8)]
        pace = 3 * timeout / len(pieces)
        for piece in pieces:
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            await writer.drain()
            await asyncio.sleep(min(pace, timeout * 0.6))
        writer.write(b"0\r\n\r\n")
        status, answer = await asyncio.wait_for(answer_of(reader), 5)
        writer.close()
    assert time.monotonic() - started > 2 * timeout
    assert (status, answer["status"]) == (200, "stored"), answer


async def test_serve_does_not_count_a_trusted_proxy_s_connections(clean_database: str) -> None:
    cap = 5
    async with (
        service(
            clean_database,
            BODY_TIMEOUT_SECONDS=1.0,
            MAX_CONNECTIONS_PER_CLIENT=cap,
            TRUSTED_PROXIES=ATTACKER,
        ) as url,
        probing(url) as probes,
    ):
        # Every client behind the proxy comes from its address: 3x the cap are all held (until
        # their bodies time out), while an untrusted address is held to the cap.
        from_proxy = [asyncio.create_task(stall(url, ATTACKER, wait=5)) for _ in range(3 * cap)]
        from_client = [asyncio.create_task(stall(url, OTHER, wait=5)) for _ in range(2 * cap)]
        proxied = await asyncio.gather(*from_proxy)
        direct = await asyncio.gather(*from_client)
    assert [s.status for s in proxied] == [408] * (3 * cap)
    assert sorted(s.status == 408 for s in direct) == [False] * cap + [True] * cap
    probes.check()
