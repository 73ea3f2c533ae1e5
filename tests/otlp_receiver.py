"""A real OTLP/HTTP trace receiver on loopback: what a collector would get from the service.

It decodes each `POST /v1/traces` (protobuf) with `opentelemetry-proto`'s
ExportTraceServiceRequest and keeps every span as a plain `ReceivedSpan`.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.servers import bind_loopback, serving, url_of

# opentelemetry-proto's Span.SpanKind values.
KINDS = {1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}


@dataclass(frozen=True)
class ReceivedSpan:
    name: str
    kind: str
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, Any]
    resource: dict[str, Any]
    status_code: int


@dataclass
class OtlpReceiver:
    url: str = ""
    spans: list[ReceivedSpan] = field(default_factory=list)
    exports: int = 0
    """How many export requests came."""
    received: int = 0
    """How many spans came (kept or not)."""
    keep: bool = True
    """False: only count the spans (the benchmark's receiver, under load)."""

    @property
    def endpoint(self) -> str:
        """The value for OTEL_EXPORTER_OTLP_ENDPOINT (the exporter adds /v1/traces)."""
        return self.url

    async def receive(self, request: Request) -> Response:
        export = ExportTraceServiceRequest()
        export.ParseFromString(await request.body())
        self.exports += 1
        for resource_spans in export.resource_spans:
            if not self.keep:
                self.received += sum(len(scoped.spans) for scoped in resource_spans.scope_spans)
                continue
            resource = _attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.received += 1
                    self.spans.append(
                        ReceivedSpan(
                            name=span.name,
                            kind=KINDS.get(span.kind, "unspecified"),
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            attributes=_attributes(span.attributes),
                            resource=resource,
                            status_code=span.status.code,
                        )
                    )
        return Response(
            ExportTraceServiceResponse().SerializeToString(),
            media_type="application/x-protobuf",
        )

    async def wait_for(
        self, found: Callable[[list[ReceivedSpan]], bool], *, timeout: float = 15.0
    ) -> list[ReceivedSpan]:
        """The spans received, once `found(spans)` holds (fails the test after `timeout`)."""
        deadline = time.monotonic() + timeout
        while not found(self.spans):
            if time.monotonic() > deadline:
                names = [(s.name, s.kind, s.trace_id[:8]) for s in self.spans]
                raise AssertionError(f"the spans never came; received: {names}")
            await asyncio.sleep(0.05)
        return list(self.spans)


def _attributes(items: Any) -> dict[str, Any]:
    return {item.key: _value(item.value) for item in items}


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return None if kind is None else getattr(value, kind)


def _app(receiver: OtlpReceiver) -> Starlette:
    return Starlette(routes=[Route("/v1/traces", receiver.receive, methods=["POST"])])


@contextlib.asynccontextmanager
async def running_receiver() -> AsyncIterator[OtlpReceiver]:
    """A receiver served in the test's own event loop."""
    receiver = OtlpReceiver()
    sock = bind_loopback()
    receiver.url = url_of(sock)
    async with serving(_app(receiver), sock):
        yield receiver


@contextlib.contextmanager
def receiver_thread(*, keep: bool = False) -> Iterator[OtlpReceiver]:
    """A receiver served in a thread (for the benchmark, whose own code is synchronous)."""
    receiver = OtlpReceiver(keep=keep)
    sock = bind_loopback()
    receiver.url = url_of(sock)
    server = uvicorn.Server(uvicorn.Config(_app(receiver), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the OTLP receiver did not start"
        time.sleep(0.01)
    try:
        yield receiver
    finally:
        server.should_exit = True
        thread.join(timeout=5)
