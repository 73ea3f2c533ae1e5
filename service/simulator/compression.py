"""Compressed answers, as Visma.net's API gives them to a client that accepts them (its docs
name brotli, gzip and deflate for `Accept-Encoding`). The simulator uses the first of those the
client lists; which one Visma prefers when a client accepts several is not documented."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable

import brotli
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.simulator.outcomes import is_erp_path

ENCODERS: dict[str, Callable[[bytes], bytes]] = {
    "br": brotli.compress,
    "gzip": gzip.compress,
    "deflate": zlib.compress,  # HTTP's "deflate" is the zlib format (RFC 9110 8.4.1.2)
}


def chosen_encoding(accept_encoding: str) -> str | None:
    """The first encoding the client lists that the simulator can give (q-values ignored)."""
    for item in accept_encoding.split(","):
        name = item.split(";", 1)[0].strip().lower()
        if name in ENCODERS:
            return name
    return None


class CompressAnswers:
    """Pure ASGI: the ERP API's answers compressed for a client that accepts it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_erp_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        accepted = next((v for k, v in scope["headers"] if k == b"accept-encoding"), b"")
        encoding = chosen_encoding(accepted.decode("latin-1"))
        if encoding is None:
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        body = bytearray()

        async def buffered(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] != "http.response.body" or start is None:
                await send(message)
                return
            body.extend(message.get("body", b""))
            if message.get("more_body", False):
                return
            headers = [(k, v) for k, v in start["headers"] if k.lower() not in (b"content-length",)]
            content = bytes(body)
            if content and not any(k.lower() == b"content-encoding" for k, _ in headers):
                content = ENCODERS[encoding](content)
                headers += [(b"content-encoding", encoding.encode()), (b"vary", b"Accept-Encoding")]
            headers.append((b"content-length", str(len(content)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": content})

        await self.app(scope, receive, buffered)
