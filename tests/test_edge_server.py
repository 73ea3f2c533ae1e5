"""The server's edge, attacked over real loopback sockets: huge and slow request heads, and
more connections than the limit, while other clients keep getting `/healthz` within a second.

The service runs as `visma-hooks serve` runs it (`service.server.server_config`), with the head
limits shortened by settings so each attack is over in a few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.app import create_app
from tests.conftest import make_settings
from tests.servers import bind_loopback, serving

pytestmark = pytest.mark.e2e

HEAD = b"GET /healthz HTTP/1.1\r\nHost: service\r\n"
TICK = 0.1
"""A slow client's pace: one byte, or one reconnection, per tick."""


@dataclass
class Probes:
    """Another client asking `/healthz` on a fresh connection, again and again."""

    latencies: list[float] = field(default_factory=list)
    statuses: list[int | str] = field(default_factory=list)

    def check(self) -> None:
        assert self.latencies, "no probe ran"
        assert all(s == 200 for s in self.statuses), self.statuses
        assert max(self.latencies) < 1.0, f"slowest /healthz took {max(self.latencies):.2f} s"


@contextlib.asynccontextmanager
async def probing(url: str, *, every: float = 0.05) -> AsyncIterator[Probes]:
    probes = Probes()

    async def run() -> None:
        # No keep-alive: each probe is a new client, as a load balancer's health check is.
        limits = httpx.Limits(max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=5.0) as client:
            while True:
                started = time.monotonic()
                try:
                    status: int | str = (await client.get("/healthz")).status_code
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                probes.latencies.append(time.monotonic() - started)
                probes.statuses.append(status)
                await asyncio.sleep(every)

    task = asyncio.create_task(run())
    try:
        yield probes
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def service(database_url: str, **overrides: Any) -> AsyncIterator[str]:
    settings = make_settings(database_url, **overrides)
    sock = bind_loopback()
    async with serving(create_app(settings), sock, settings=settings) as url:
        yield url


async def answer_of(reader: asyncio.StreamReader) -> tuple[int, dict[str, Any]]:
    """The status and JSON body of the response on `reader`."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return status, json.loads(await reader.readexactly(length))


async def test_serve_refuses_a_huge_header_while_others_are_served(clean_database: str) -> None:
    total = 32 * 1024 * 1024
    chunk = b"a" * 65536
    async with service(clean_database) as url, probing(url) as probes:
        host, port = url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        sent = 0
        outcome: str | int = "sent it all"
        started = time.monotonic()
        try:
            writer.write(HEAD + b"X-Big: ")
            while sent < total and time.monotonic() - started < 20:
                writer.write(chunk)
                await writer.drain()
                sent += len(chunk)
            writer.write(b"\r\n\r\n")
            await writer.drain()
            outcome, _ = await asyncio.wait_for(answer_of(reader), 20)
        except (ConnectionError, asyncio.IncompleteReadError):
            outcome = "closed"
        finally:
            writer.close()
        await asyncio.sleep(0.3)  # probes while the server reads no more of it
    # Refused (431, or closed before the answer could be read) long before 32 MB went out.
    assert outcome in (431, "closed")
    assert sent < total // 2
    probes.check()


async def test_serve_answers_431_for_a_long_header_and_414_for_a_long_target(
    clean_database: str,
) -> None:
    async with service(clean_database) as url:
        host, port = url.removeprefix("http://").split(":")
        long_target = b"GET /healthz?q=" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
        for request, expected in [
            (HEAD + b"X-Long: " + b"a" * 20_000 + b"\r\n\r\n", (431, "header_too_large")),
            (long_target, (414, "uri_too_long")),
            (HEAD + b"X-Fine: " + b"a" * 7_000 + b"\r\n\r\n", (200, None)),
        ]:
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(request)
            status, body = await asyncio.wait_for(answer_of(reader), 5)
            writer.close()
            assert (status, body.get("error")) == expected, body
            if status != 200:
                assert "MAX_HEADER_BYTES=8192" in body["detail"]


@dataclass
class Slow:
    """One slow client: when it connected and when the server ended its connection."""

    opened: float
    closed: float | None = None


async def slow_client(
    host: str, port: int, clients: list[Slow], *, kept_alive: bool, idle: bool, until: float
) -> None:
    """Send a request head one byte at a time (or nothing at all), reconnecting at the next
    tick whenever the server ends the connection, until `until` (as slowloris does)."""
    reconnecting = False
    while time.monotonic() < until:
        if reconnecting:
            await asyncio.sleep(TICK)
        reconnecting = True
        reader, writer = await asyncio.open_connection(host, port)
        me = Slow(opened=time.monotonic())
        clients.append(me)
        try:
            if kept_alive:  # one quick request first: the slow head is the connection's second
                writer.write(HEAD + b"\r\n")
                await asyncio.wait_for(answer_of(reader), 5)
        except (ConnectionError, asyncio.IncompleteReadError):
            me.closed = time.monotonic()  # ended before it was answered: it made room
            writer.close()
            continue
        ended = asyncio.create_task(closed_at(reader))
        for byte in b"" if idle else HEAD + b"X-Slow: " + b"a" * 1000:
            if ended.done() or time.monotonic() > until:
                break
            writer.write(bytes([byte]))
            await asyncio.wait({ended}, timeout=TICK)
        else:
            await asyncio.wait({ended}, timeout=max(until - time.monotonic(), 0))
        if ended.done():
            me.closed = ended.result()
        else:
            ended.cancel()
        writer.close()


async def closed_at(reader: asyncio.StreamReader) -> float:
    """When the server ended the connection (after whatever error answer it sent)."""
    with contextlib.suppress(ConnectionError):
        await reader.read()
    return time.monotonic()


async def attack(url: str, attackers: int, *, seconds: float) -> list[Slow]:
    """`attackers` slow clients (some idle, some on kept-alive connections) for `seconds`."""
    host, port = url.removeprefix("http://").split(":")
    clients: list[Slow] = []
    until = time.monotonic() + seconds
    await asyncio.gather(
        *(
            slow_client(
                host, int(port), clients, kept_alive=n % 3 == 1, idle=n % 3 == 2, until=until
            )
            for n in range(attackers)
        )
    )
    return clients


def average_open(clients: list[Slow], *, start: float, end: float) -> float:
    """How many slow connections were open on average between `start` and `end`, as the
    clients saw them."""
    total = 0.0
    for client in clients:
        closed = client.closed if client.closed is not None else end
        total += max(0.0, min(closed, end) - max(client.opened, start))
    return total / (end - start)


async def test_serve_cuts_off_slow_heads_while_others_are_served(clean_database: str) -> None:
    timeout = 1.0
    async with (
        service(clean_database, HEAD_TIMEOUT_SECONDS=timeout) as url,
        probing(url) as probes,
    ):
        clients = await attack(url, 30, seconds=2.5)
    # However steadily a head trickles in (or a connection stays silent, or a kept-alive one
    # starts its next head), the server ends it at the deadline; never before, never much later.
    ended = [c.closed - c.opened for c in clients if c.closed is not None]
    alive = [c for c in clients if c.closed is None and c.opened < clients[-1].opened - 1.75]
    assert not alive, f"{len(alive)} slow connections outlived the head deadline"
    assert len(ended) >= 30
    assert all(timeout - 0.1 < t < timeout + 0.75 for t in ended), sorted(ended)
    probes.check()


async def test_serve_holds_max_connections_under_a_flood_of_slow_heads(
    clean_database: str,
) -> None:
    cap = 20
    async with (
        service(clean_database, HEAD_TIMEOUT_SECONDS=5, MAX_CONNECTIONS=cap) as url,
        probing(url) as probes,
    ):
        clients = await attack(url, 2 * cap, seconds=2.0)
    # Twice as many slow clients as the server holds: each newcomer pushes out the connection
    # that has waited longest for its head, so the server holds no more than its limit (the
    # clients see a few more for a moment at each wave of reconnections, connected by the
    # kernel before the server has accepted them), and a client that sends its head at once is
    # still served.
    start = min(c.opened for c in clients) + 0.5
    end = max(c.opened for c in clients)
    assert average_open(clients, start=start, end=end) <= cap + 2
    assert sum(1 for c in clients if c.closed is not None) >= cap
    probes.check()


async def test_serve_at_its_connection_limit_still_answers_a_new_client(
    clean_database: str,
) -> None:
    async with service(clean_database, MAX_CONNECTIONS=5) as url:
        host, port = url.removeprefix("http://").split(":")
        idle = [await asyncio.open_connection(host, int(port)) for _ in range(5)]
        async with httpx.AsyncClient(base_url=url) as client:
            assert (await client.get("/healthz")).status_code == 200
        # The connection that waited longest made room.
        first_reader, _ = idle[0]
        assert await asyncio.wait_for(first_reader.read(), 2) == b""
        for _, writer in idle:
            writer.close()


def free_port() -> int:
    sock = bind_loopback()
    port: int = sock.getsockname()[1]
    sock.close()
    return port


def serve_command(
    database_url: str, port: int, *, cwd: Path, **env: str
) -> subprocess.Popen[bytes]:
    """`visma-hooks serve` as a process of its own (run from `cwd`: no developer's .env)."""
    environment = {
        **os.environ,
        "DATABASE_URL": database_url,
        "VISMA_WEBHOOK_SECRETS": "secret",
        **env,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "service.cli", "serve", "--port", str(port)],
        env=environment,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


async def test_visma_hooks_serve_runs_with_the_head_limits(
    clean_database: str, tmp_path: Path
) -> None:
    port = free_port()
    process = serve_command(clean_database, port, cwd=tmp_path, MAX_HEADER_BYTES="2048")
    try:
        deadline = time.monotonic() + 20
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            while True:
                assert process.poll() is None, process.communicate()[1].decode()
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get("/healthz")).status_code == 200:
                        break
                assert time.monotonic() < deadline, "serve did not come up"
                await asyncio.sleep(0.1)
            response = await client.get("/healthz", headers={"X-Long": "a" * 3000})
        assert response.status_code == 431
        assert "MAX_HEADER_BYTES=2048" in response.json()["detail"]
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


def test_visma_hooks_serve_with_a_short_signing_secret_stops_with_one_line(
    tmp_path: Path,
) -> None:
    process = serve_command(
        f"sqlite:///{tmp_path / 'x.db'}",
        free_port(),
        cwd=tmp_path,
        ALERT_SIGNING_SECRET="whsec_YWJj",
    )
    try:
        _, stderr = process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise AssertionError("serve started with a 3-byte signing secret") from None
    lines = stderr.decode().strip().splitlines()
    assert process.returncode != 0
    assert len(lines) == 1, lines
    assert "ALERT_SIGNING_SECRET" in lines[0] and "decodes to 3 bytes" in lines[0]
    assert "YWJj" not in lines[0]  # the secret itself is never printed
