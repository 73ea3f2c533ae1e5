"""Traces through OpenTelemetry, configured only by the standard `OTEL_*` variables.

Off unless `OTEL_TRACES_EXPORTER` or `OTEL_EXPORTER_OTLP_ENDPOINT` is set (and
`OTEL_SDK_DISABLED` is not `true`): then
`configure_tracing` installs the SDK (OTLP over HTTP/protobuf by default, `console` prints
spans, `none` exports nothing), and the SDK reads the rest itself (`OTEL_TRACES_SAMPLER`,
`OTEL_RESOURCE_ATTRIBUTES`, `OTEL_BSP_*`, the exporter's endpoint and headers). Off, `enabled`
stays False and every helper here hands back a shared no-op, so the callers (and the webhook
path, which the app does not even wrap) do no span work at all.

A job's trace context travels as a W3C `traceparent` value: stored with the job, sent to Visma
in its subscription pairs (`domain.TRACEPARENT_KEY`), and read back from the webhook.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

log = logging.getLogger(__name__)

SERVICE_NAME = "visma-hooks"
"""The `service.name` when neither OTEL_SERVICE_NAME nor OTEL_RESOURCE_ATTRIBUTES names one."""
TRACER_NAME = "visma-hooks"
SWITCHES = ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT")
"""Either one turns tracing on."""
TRACEPARENT = "traceparent"

# Attribute names (the contract: teams query by them).
TENANT = "visma.tenant"
VISMA_JOB_ID = "visma.job_id"
JOB_ID = "vh.job_id"
JOB_STATE = "vh.job.state"

enabled = False
"""Whether spans are made: read it before doing any span work (a module attribute: cheap)."""

_PROPAGATOR = TraceContextTextMapPropagator()
_OFF: contextlib.nullcontext[None] = contextlib.nullcontext()


def configure_tracing(environ: Mapping[str, str] | None = None) -> bool:
    """Install the SDK when the environment asks for traces; returns whether it did.

    Idempotent in a process (a second call changes nothing). Each served worker process calls
    it for itself: the batch processor's thread does not survive a fork.
    """
    global enabled
    env = os.environ if environ is None else environ
    if enabled or not any(env.get(name) for name in SWITCHES):
        return enabled
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    resource = Resource.create()
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": SERVICE_NAME}))
    provider = TracerProvider(resource=resource)  # the sampler from OTEL_TRACES_SAMPLER
    names = [n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "otlp").split(",")]
    for name in filter(None, names):
        processor = _processor(name)
        if processor is not None:
            provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    enabled = True
    return True


def _processor(name: str) -> Any:
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    if name == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return BatchSpanProcessor(OTLPSpanExporter())
    if name == "console":
        return BatchSpanProcessor(ConsoleSpanExporter())
    if name != "none":
        log.warning("OTEL_TRACES_EXPORTER names %r, which this service does not know", name)
    return None


def flush_tracing(timeout_seconds: float = 5.0) -> None:
    """Export the spans still queued. A served worker process calls it as it stops: the SDK's
    own flush at exit never runs in a worker that multiprocessing ends with `os._exit`."""
    flush = getattr(trace.get_tracer_provider(), "force_flush", None)
    if enabled and flush is not None:
        flush(int(timeout_seconds * 1000))


def shutdown_tracing() -> None:
    """Export what is still queued and stop the exporters (the end of a process)."""
    shutdown = getattr(trace.get_tracer_provider(), "shutdown", None)
    if enabled and shutdown is not None:
        shutdown()


_provider: trace.TracerProvider | None = None
"""The provider `traced_with` lends for a block; None: the global one."""


def tracer() -> trace.Tracer:
    return trace.get_tracer(TRACER_NAME, tracer_provider=_provider)


@contextlib.contextmanager
def traced_with(provider: trace.TracerProvider) -> Iterator[None]:
    """Tracing on for the block, through `provider` instead of the global one (which can be
    set once per process): for an app embedded in another process, and the tests. Apps made
    inside the block are made traced."""
    global enabled, _provider
    before = enabled, _provider
    enabled, _provider = True, provider
    try:
        yield
    finally:
        enabled, _provider = before


def parent_context(traceparent: str | None, tracestate: str | None = None) -> Any:
    """The context a W3C `traceparent` (and `tracestate`) names; None for none or a bad one."""
    if not traceparent:
        return None
    carrier = {TRACEPARENT: traceparent}
    if tracestate:
        carrier["tracestate"] = tracestate
    ctx = _PROPAGATOR.extract(carrier)
    if not trace.get_current_span(ctx).get_span_context().is_valid:
        return None
    return ctx


def current_traceparent() -> str | None:
    """The current span's `traceparent`, when tracing is on and a span is current."""
    if not enabled:
        return None
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get(TRACEPARENT)


def current_span() -> Span | None:
    """The span current now, when tracing is on and one is recording (else None)."""
    if not enabled:
        return None
    found = trace.get_current_span()
    return found if found.is_recording() else None


def inject(headers: dict[str, str]) -> None:
    """Add the current span's `traceparent` (and `tracestate`) to outgoing `headers`."""
    if enabled:
        _PROPAGATOR.inject(headers)


def span(
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    traceparent: str | None = None,
    attributes: Mapping[str, Any] | None = None,
) -> contextlib.AbstractContextManager[Span | None]:
    """A current span for the block (None when tracing is off).

    With `traceparent` (a job's stored context) the span joins that trace as its child, so a
    job's later work (its state reads, its callback) lands in the trace that submitted it.
    """
    if not enabled:
        return _OFF
    context = parent_context(traceparent)
    return tracer().start_as_current_span(
        name, context=context, kind=kind, attributes=_clean(attributes)
    )


def client_span(
    method: str,
    url: str,
    *,
    traceparent: str | None = None,
    attributes: Mapping[str, Any] | None = None,
) -> contextlib.AbstractContextManager[Span | None]:
    """A client span for an HTTP request to `url` (give it without its secret parts), with
    the HTTP semantic-convention attributes; None when tracing is off."""
    if not enabled:
        return _OFF
    return span(
        method,
        kind=SpanKind.CLIENT,
        traceparent=traceparent,
        attributes={**http_client_attributes(method, url), **(attributes or {})},
    )


@contextlib.contextmanager
def server_span(
    name: str, headers: Mapping[str, str], *, attributes: Mapping[str, Any] | None = None
) -> Iterator[Span | None]:
    """A server span continuing the incoming `traceparent`/`tracestate` when one is given."""
    if not enabled:
        yield None
        return
    context = parent_context(headers.get(TRACEPARENT), headers.get("tracestate"))
    with tracer().start_as_current_span(
        name, context=context, kind=SpanKind.SERVER, attributes=_clean(attributes)
    ) as current:
        yield current


def set_attributes(target: Span | None, **attributes: Any) -> None:
    """Set attributes (keys with `_` for `.`: `visma_job_id` is `visma.job_id`), skipping
    None values; nothing when `target` is None (tracing off)."""
    if target is None:
        return
    for key, value in attributes.items():
        if value is not None:
            target.set_attribute(_NAMES.get(key, key.replace("_", ".")), value)


_NAMES = {
    "tenant": TENANT,
    "visma_job_id": VISMA_JOB_ID,
    "job_id": JOB_ID,
    "job_state": JOB_STATE,
    "status_code": "http.response.status_code",
}


def set_http_status(target: Span | None, status: int) -> None:
    """The answer's status; 5xx marks a server span failed, 4xx and 5xx a client span."""
    if target is None:
        return
    target.set_attribute("http.response.status_code", status)
    kind = getattr(target, "kind", SpanKind.INTERNAL)
    if status >= 500 or (status >= 400 and kind is SpanKind.CLIENT):
        target.set_status(Status(StatusCode.ERROR))


def set_failed(target: Span | None, description: str) -> None:
    """Mark `target` failed (a request that got no answer), saying why."""
    if target is not None:
        target.set_status(Status(StatusCode.ERROR, description))


def url_without_credentials(url: str) -> str:
    """`url` with any user name and password taken out (span attributes are not secret)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def http_client_attributes(method: str, url: str) -> dict[str, Any]:
    """The HTTP semantic-convention attributes of a client request to `url`."""
    parts = urlsplit(url)
    return _clean(
        {
            "http.request.method": method,
            "url.full": url_without_credentials(url),
            "server.address": parts.hostname,
            "server.port": parts.port or (443 if parts.scheme == "https" else 80),
        }
    )


def _clean(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (attributes or {}).items() if v is not None}
