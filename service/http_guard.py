"""The connection protocol of the service's HTTP server, and the limits it holds clients to.

uvicorn's httptools protocol (the fast one, used when httptools is installed) has no header size
limit of its own (only the h11 protocol has one), resets its only timer on every byte it
receives, and checks `limit_concurrency` only once a request head is complete. So one huge
header stalls the process, and clients that send a head one byte at a time keep connections
(and file descriptors) forever. `GuardedHttpToolsProtocol` adds what is missing:

- the head's bytes are counted before the parser sees them: past MAX_HEAD_BYTES the client gets
  431 and the connection is closed, so nothing larger is ever buffered or parsed;
- the request line and each header line are measured: past MAX_HEADER_BYTES, 414 or 431;
- one deadline covers the whole head (HEAD_TIMEOUT_SECONDS), armed when the connection is made
  (or, on a kept-alive connection, at the next head's first byte) and never reset by a byte;
- MAX_CONNECTIONS is enforced when a connection is made, not after its head: at the limit the
  connection that has waited longest for a head makes room, else the new one gets 503;
- MAX_CONNECTIONS_PER_CLIENT too, per client address (TRUSTED_PROXIES exempt: every client
  behind a proxy comes from its address): beyond it the new connection gets 429;
- a body that stops arriving is cut off: BODY_TIMEOUT_SECONDS without a byte of it (each chunk
  starts the time again) closes the connection, with 408 if nothing was answered yet. A body
  that arrives with its head (every ordinary delivery) never arms that timer.

Each refusal counts in `visma_hooks_connections_refused_total`.
"""

from __future__ import annotations

import asyncio
import http
import json
import weakref
from dataclasses import dataclass
from typing import Any

import httptools
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from service.metrics import (
    REFUSED_BODY_TIMEOUT,
    REFUSED_CLIENT_LIMIT,
    REFUSED_HEAD_TIMEOUT,
    REFUSED_HEAD_TOO_LARGE,
    REFUSED_SERVER_FULL,
)
from service.settings import Network, Settings
from service.web import in_networks, parse_address


@dataclass(frozen=True)
class ServerLimits:
    """What a client may send before its request reaches the application."""

    max_header_bytes: int
    max_head_bytes: int
    head_timeout_seconds: float
    max_connections: int
    body_timeout_seconds: float
    max_connections_per_client: int
    trusted_proxies: tuple[Network, ...]
    """Exempt from the per-client limit."""

    @classmethod
    def from_settings(cls, settings: Settings) -> ServerLimits:
        return cls(
            max_header_bytes=settings.MAX_HEADER_BYTES,
            max_head_bytes=settings.MAX_HEAD_BYTES,
            head_timeout_seconds=settings.HEAD_TIMEOUT_SECONDS,
            max_connections=settings.MAX_CONNECTIONS,
            body_timeout_seconds=settings.BODY_TIMEOUT_SECONDS,
            max_connections_per_client=settings.MAX_CONNECTIONS_PER_CLIENT,
            trusted_proxies=tuple(settings.TRUSTED_PROXIES),
        )


DEFAULT_LIMITS = ServerLimits.from_settings(Settings.model_construct())


class _HeadRefused(Exception):
    """Raised from a parser callback to stop parsing a head we refuse."""


class _Waiting:
    """One server's connections that wait for a request head, the longest-waiting first."""

    def __init__(self) -> None:
        self._order: dict[GuardedHttpToolsProtocol, None] = {}

    def add(self, protocol: GuardedHttpToolsProtocol) -> None:
        self._order.pop(protocol, None)
        self._order[protocol] = None

    def discard(self, protocol: GuardedHttpToolsProtocol) -> None:
        self._order.pop(protocol, None)

    def evict_longest(self) -> bool:
        """Close the connection that has waited longest for a head; False if none waits."""
        while self._order:
            protocol = next(iter(self._order))
            del self._order[protocol]
            if not protocol.transport.is_closing():
                protocol.evict()
                return True
        return False


_WAITING: weakref.WeakKeyDictionary[ServerState, _Waiting] = weakref.WeakKeyDictionary()


class _Clients:
    """One server's open connections per client address (only addresses with one open)."""

    def __init__(self) -> None:
        self.open: dict[str, int] = {}

    def add(self, address: str) -> int:
        """Count one more connection from `address`; how many it has open now."""
        count = self.open.get(address, 0) + 1
        self.open[address] = count
        return count

    def discard(self, address: str) -> None:
        count = self.open[address] - 1
        if count:
            self.open[address] = count
        else:
            del self.open[address]


_CLIENTS: weakref.WeakKeyDictionary[ServerState, _Clients] = weakref.WeakKeyDictionary()


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with bounds on the request head and on connections."""

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        limits = getattr(config, "limits", None)
        self.limits = limits if isinstance(limits, ServerLimits) else DEFAULT_LIMITS
        self._waiting = _WAITING.setdefault(server_state, _Waiting())
        self._clients = _CLIENTS.setdefault(server_state, _Clients())
        self._counted_as: str | None = None
        self._in_head = True
        self._in_body = False
        self._body_deadline: asyncio.TimerHandle | None = None
        self._body_progress = 0.0
        self._head_bytes = 0
        self._head_deadline: asyncio.TimerHandle | None = None
        self._refusal: tuple[int, str, str] | None = None

    # Connection events

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        crowded = len(self.connections) >= self.limits.max_connections
        super().connection_made(transport)
        if self._over_client_limit():
            REFUSED_CLIENT_LIMIT.inc()
            self._refuse(
                429,
                "too_many_connections",
                "this client address holds MAX_CONNECTIONS_PER_CLIENT="
                f"{self.limits.max_connections_per_client} connections already; close some first",
            )
            return
        if crowded and not self._waiting.evict_longest():
            REFUSED_SERVER_FULL.inc()
            self._refuse(
                503,
                "unavailable",
                f"the server holds MAX_CONNECTIONS={self.limits.max_connections} connections "
                "that are all busy; retry later",
            )
            return
        self._arm_deadline()
        self._waiting.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_deadline()
        self._disarm_body_deadline()
        self._waiting.discard(self)
        if self._counted_as is not None:
            self._clients.discard(self._counted_as)
            self._counted_as = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if not self._in_head:
            self._feed(data)
            return
        if self._head_deadline is None:  # a kept-alive connection's next head begins
            self._arm_deadline()
        room = self.limits.max_head_bytes - self._head_bytes
        if len(data) <= room:
            self._head_bytes += len(data)
            self._feed(data)
            return
        # More than the head may still take: parse what fits, and the rest only if the head
        # ended within it.
        self._head_bytes += room
        self._feed(data[:room])
        if self.transport.is_closing():
            return
        if self._in_head:
            REFUSED_HEAD_TOO_LARGE.inc()
            self._refuse(
                431,
                "header_too_large",
                f"the request head is larger than MAX_HEAD_BYTES={self.limits.max_head_bytes}",
            )
            return
        self._feed(data[room:])

    def _feed(self, data: bytes) -> None:
        # uvicorn's data_received, except that a head we refuse is answered as such, not 400.
        self._unset_keepalive_if_required()
        if self._body_deadline is not None:
            self._body_progress = self.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self._refusal is not None:
                REFUSED_HEAD_TOO_LARGE.inc()
                self._refuse(*self._refusal)
                return
            msg = "Invalid HTTP request received."
            self.logger.warning(msg)
            self.send_400_response(msg)
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        # A body still to come after what arrived (never for a body sent with its head).
        if self._in_body and self._body_deadline is None:
            self._body_progress = self.loop.time()
            self._arm_body_deadline(self.limits.body_timeout_seconds)

    # Parser callbacks

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        limit = self.limits.max_header_bytes
        if len(self.url) > limit:
            detail = f"the request target is longer than MAX_HEADER_BYTES={limit}"
            self._refusal = (414, "uri_too_long", detail)
            raise _HeadRefused

    def on_header(self, name: bytes, value: bytes) -> None:
        limit = self.limits.max_header_bytes
        if len(name) + len(value) + 4 > limit:  # name, ": ", value, CRLF
            detail = f"a request header is larger than MAX_HEADER_BYTES={limit}"
            self._refusal = (431, "header_too_large", detail)
            raise _HeadRefused
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._in_body = True
        self._disarm_deadline()
        self._waiting.discard(self)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_body = False
        self._disarm_body_deadline()
        super().on_message_complete()
        # What follows on this connection is the next request's head.
        self._in_head = True
        self._head_bytes = 0

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._in_head and not self.transport.is_closing() and self._response_done():
            self._waiting.add(self)  # idle, kept alive: it may make room for a new connection

    # Limits

    def _over_client_limit(self) -> bool:
        """Count this connection against its client address: True when that is one too many."""
        if self.client is None:
            return False
        address = self.client[0]
        trusted = self.limits.trusted_proxies
        if trusted and in_networks(parse_address(address), trusted):
            return False
        self._counted_as = address
        return self._clients.add(address) > self.limits.max_connections_per_client

    def evict(self) -> None:
        """Make room for a new connection: this one has waited longest for a head."""
        REFUSED_SERVER_FULL.inc()
        if self._head_bytes:
            self._refuse(
                503,
                "unavailable",
                "the server is at MAX_CONNECTIONS and this request head was the slowest",
            )
        else:
            self.transport.close()

    def _arm_deadline(self) -> None:
        self._disarm_deadline()
        self._head_deadline = self.loop.call_later(
            self.limits.head_timeout_seconds, self._head_timed_out
        )

    def _disarm_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_timed_out(self) -> None:
        self._head_deadline = None
        if not self._in_head or self.transport.is_closing():
            return
        if not self._response_done():
            # A pipelined head waits while the response before it is written.
            self._arm_deadline()
            return
        REFUSED_HEAD_TIMEOUT.inc()
        if self._head_bytes:
            self._refuse(
                408,
                "timeout",
                "the request head did not arrive within "
                f"HEAD_TIMEOUT_SECONDS={self.limits.head_timeout_seconds:g}",
            )
        else:
            self.transport.close()

    def _arm_body_deadline(self, seconds: float) -> None:
        self._body_deadline = self.loop.call_later(seconds, self._body_stalled)

    def _disarm_body_deadline(self) -> None:
        if self._body_deadline is not None:
            self._body_deadline.cancel()
            self._body_deadline = None

    def _body_stalled(self) -> None:
        """The body's timer: the connection ends if no byte of it came for the timeout."""
        self._body_deadline = None
        if not self._in_body or self.transport.is_closing():
            return
        timeout = self.limits.body_timeout_seconds
        cycle = self.cycle
        if self.flow.read_paused or (cycle is not None and cycle.waiting_for_100_continue):
            # The wait is ours (the application has not read what came, or not asked for the
            # body yet): the client is not stalling.
            self._arm_body_deadline(timeout)
            return
        idle = self.loop.time() - self._body_progress
        if idle < timeout:
            self._arm_body_deadline(timeout - idle)
            return
        REFUSED_BODY_TIMEOUT.inc()
        self._in_body = False
        answered = cycle is None or cycle.response_started
        if cycle is not None and not cycle.response_complete:
            # The application's wait for the body ends; it answers nobody.
            cycle.disconnected = True
            cycle.message_event.set()
        if answered:
            self.transport.close()
            return
        self._write_refusal(
            408,
            "timeout",
            f"no byte of the request body arrived for BODY_TIMEOUT_SECONDS={timeout:g}",
        )

    def _response_done(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _refuse(self, status: int, code: str, detail: str) -> None:
        """Answer `status` with the error JSON and close, whatever the parser was doing."""
        self._disarm_deadline()
        self._waiting.discard(self)
        self._in_head = False
        if not self._response_done():
            # A pipelined head, refused while the response before it is written: an answer
            # now would land inside that response.
            self.transport.close()
            return
        self._write_refusal(status, code, detail)

    def _write_refusal(self, status: int, code: str, detail: str) -> None:
        """Write the error answer and close the connection."""
        body = json.dumps({"error": code, "detail": detail}).encode()
        head = [f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\n".encode()]
        for name, value in self.server_state.default_headers:
            head.append(name + b": " + value + b"\r\n")
        head.append(
            b"content-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n"
            b"connection: close\r\n\r\n"
        )
        self.transport.write(b"".join(head) + body)
        self.transport.close()
