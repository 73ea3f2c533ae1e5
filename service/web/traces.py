"""Server spans for the requests a trace follows (only mounted when tracing is on).

`TraceRequests` wraps the submissions (`POST /api/v1/jobs`, its batch, a resend) and the
status page's webhooks, each continuing the caller's W3C `traceparent`/`tracestate`.
`TracedWebhook` wraps Visma's webhook endpoint: its span is a child of the job's submission,
whose context the webhook brings back in the `vh-traceparent` header (Visma echoes the
submission's subscription pairs as headers). With tracing off, the app mounts neither, so the
webhook path has not one extra call.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry.trace import Span, SpanKind
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import tracing
from service.domain import JOB_ID_KEY, TRACEPARENT_KEY, valid_traceparent
from service.visma import NOTIFICATION_ID_HEADER, TENANT_ID_HEADER

API = "/api/v1"
_ROUTES = {f"{API}/jobs": f"{API}/jobs", f"{API}/jobs/batch": f"{API}/jobs/batch"}
_STATUS_WEBHOOKS = "/webhooks/status/"
VISMA_WEBHOOK_ROUTE = "/webhooks/visma"


def traced_route(method: str, path: str) -> str | None:
    """The route template of a request that gets a server span, else None. A status webhook's
    path holds its secret token: only the template is named."""
    if method != "POST":
        return None
    if path in _ROUTES:
        return _ROUTES[path]
    if path.startswith(_STATUS_WEBHOOKS):
        return _STATUS_WEBHOOKS + "{token}"
    if path.startswith(API + "/") and path.endswith("/resend"):
        return path  # a resend names no secret, only the thing resent
    return None


class TraceRequests:
    """Pure ASGI middleware: a server span for each traced route, nothing for the others."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = traced_route(scope["method"], scope["path"]) if scope["type"] == "http" else None
        if route is None:
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        with tracing.server_span(
            f"POST {route}", headers, attributes=server_attributes(scope, headers, route)
        ) as span:
            await self.app(scope, receive, _recording_status(send, span))


class TracedWebhook:
    """Visma's webhook endpoint inside a server span that joins the job's trace."""

    def __init__(self, endpoint: ASGIApp) -> None:
        self._endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = _headers(scope)
        attributes = server_attributes(scope, headers, VISMA_WEBHOOK_ROUTE)
        attributes[tracing.JOB_ID] = headers.get(JOB_ID_KEY)
        attributes[tracing.TENANT] = headers.get(TENANT_ID_HEADER)
        attributes["vh.notification_id"] = headers.get(NOTIFICATION_ID_HEADER)
        parent = valid_traceparent(headers.get(TRACEPARENT_KEY))
        if parent is None:  # no job's context came back: the sender's own, if it sent one
            parent = valid_traceparent(headers.get(tracing.TRACEPARENT))
        with tracing.span(
            f"POST {VISMA_WEBHOOK_ROUTE}",
            kind=SpanKind.SERVER,
            traceparent=parent,
            attributes=attributes,
        ) as span:
            await self._endpoint(scope, receive, _recording_status(send, span))


def server_attributes(scope: Scope, headers: Mapping[str, str], route: str) -> dict[str, Any]:
    """The HTTP semantic-convention attributes of a server request (the path only as its
    route template: a path may hold a secret)."""
    server = scope.get("server") or (None, None)
    client = scope.get("client") or (None, None)
    return {
        "http.request.method": scope["method"],
        "http.route": route,
        "url.scheme": scope.get("scheme", "http"),
        "server.address": server[0],
        "server.port": server[1],
        "client.address": client[0],
        "network.protocol.version": scope.get("http_version"),
        "user_agent.original": headers.get("user-agent"),
    }


def _headers(scope: Scope) -> dict[str, str]:
    """The request's headers by lower-case name; a repeated name keeps its first value."""
    found: dict[str, str] = {}
    for name, value in scope["headers"]:
        found.setdefault(name.decode("latin-1"), value.decode("latin-1"))
    return found


def _recording_status(send: Send, span: Span | None) -> Send:
    async def send_recording(message: Message) -> None:
        if message["type"] == "http.response.start":
            tracing.set_http_status(span, message["status"])
        await send(message)

    return send_recording
