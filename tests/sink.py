"""A real HTTP alert sink: JSON hooks verified with the `standardwebhooks` library on the sink's
side, and a Slack endpoint that refuses what Slack's incoming webhooks refuse."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from tests.servers import bind_loopback, serving, url_of

SIGNING_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SLACK_BLOCK_TYPES = {"section", "context", "header", "divider", "actions", "image"}


@dataclass
class Hit:
    """One request the sink received, and what it answered."""

    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    at: float

    def json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data


@dataclass
class Sink:
    url: str = ""
    hits: list[Hit] = field(default_factory=list)
    fail_next: dict[str, int] = field(default_factory=dict)
    """Per path: how many of the next requests answer 500."""
    gone: set[str] = field(default_factory=set)
    """Paths that answer 410 Gone (a receiver that was switched off for good)."""
    secret: str = SIGNING_SECRET

    def reset(self) -> None:
        self.hits.clear()
        self.fail_next.clear()
        self.gone.clear()

    def delivered(self, path: str) -> list[Hit]:
        """Requests to `path` that the sink accepted (2xx), in arrival order."""
        return [h for h in self.hits if h.path == path and 200 <= h.status < 300]

    async def wait_for(self, path: str, count: int, *, timeout: float = 10.0) -> list[Hit]:
        """Wait until `count` requests to `path` were accepted; fails the test after `timeout`."""
        deadline = time.monotonic() + timeout
        while len(self.delivered(path)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{path}: {len(self.delivered(path))} of {count} alerts; hits: {self.hits}"
                )
            await asyncio.sleep(0.02)
        return self.delivered(path)

    async def receive(self, request: Request) -> Response:
        body = await request.body()
        path = request.url.path
        if path in self.gone:
            answer: Response = PlainTextResponse("this hook was removed", status_code=410)
        elif self.fail_next.get(path, 0) > 0:
            self.fail_next[path] -= 1
            answer = PlainTextResponse("sink is down", status_code=500)
        elif path.startswith("/slack"):
            problem = slack_problem(body)
            # Slack answers 400 with a short reason for a payload it will not post, else "ok".
            answer = PlainTextResponse(problem or "ok", status_code=400 if problem else 200)
        else:
            try:
                Webhook(self.secret).verify(body, dict(request.headers))
                answer = Response(status_code=204)
            except WebhookVerificationError as exc:
                answer = PlainTextResponse(f"bad signature: {exc}", status_code=401)
        self.hits.append(
            Hit(path, dict(request.headers), body, answer.status_code, time.monotonic())
        )
        return answer


def slack_problem(body: bytes) -> str | None:
    """Why Slack's incoming webhook would refuse this payload (None: it would post it).

    Slack wants JSON with a non-empty `text`, or `blocks`; sections hold at most 3000
    characters of text, a message at most 50 blocks.
    """
    try:
        payload = json.loads(body)
    except ValueError:
        return "invalid_payload"
    if not isinstance(payload, dict):
        return "invalid_payload"
    text, blocks = payload.get("text"), payload.get("blocks")
    if not (isinstance(text, str) and text.strip()) and not blocks:
        return "no_text"
    if blocks is None:
        return None
    if not isinstance(blocks, list) or len(blocks) > 50:
        return "invalid_blocks"
    for block in blocks:
        if not isinstance(block, dict) or block.get("type") not in SLACK_BLOCK_TYPES:
            return "invalid_blocks"
        texts = [block.get("text")] if block["type"] == "section" else block.get("elements", [])
        for item in texts:
            if block["type"] == "section" and item is None:
                continue
            if not isinstance(item, dict) or item.get("type") not in ("mrkdwn", "plain_text"):
                return "invalid_blocks"
            if not isinstance(item.get("text"), str) or not 0 < len(item["text"]) <= 3000:
                return "invalid_blocks"
    return None


@contextlib.asynccontextmanager
async def running_sink() -> AsyncIterator[Sink]:
    sink = Sink()
    routes = [
        Route("/hook/{name}", sink.receive, methods=["POST"]),
        Route("/slack/{name}", sink.receive, methods=["POST"]),
    ]
    sock = bind_loopback()
    async with serving(Starlette(routes=routes), sock):
        sink.url = url_of(sock)
        yield sink
