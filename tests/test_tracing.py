"""Traces: one trace from a team's request through Visma (the simulator) and back to the team's
callback receiver, exported over OTLP/HTTP to a real receiver on loopback; off by default;
the console exporter; trace ids on log lines. The service runs as `visma-hooks serve`, a
process of its own, since the SDK's set-up is for the whole process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from service import tracing
from service.domain import TRACEPARENT_KEY, background_header, valid_traceparent
from service.flows import ResolveSettings, resolve_due_jobs
from service.simulator import SimulatorConfig, create_simulator_app, parse_background_header
from service.web.traces import traced_route
from tests.cli_process import Serving, cli_env, free_port, serving, visma_settings
from tests.conftest import API_TOKEN, WEBHOOK_SECRET
from tests.harness import in_process, signed_delivery
from tests.otlp_receiver import ReceivedSpan, running_receiver
from tests.servers import bind_loopback, url_of
from tests.servers import serving as serving_app
from tests.sink import SIGNING_SECRET, Sink

pytestmark = pytest.mark.e2e

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{CALLER_SPAN_ID}-01"


@dataclass
class Service:
    process: Serving
    api: httpx.AsyncClient


async def wait_ready(server: Serving, *, timeout: float = 60) -> None:
    """Until `/readyz` answers 200 (without blocking the loop that serves the simulator)."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=2) as client:
        while time.monotonic() < deadline:
            code = server.process.poll()
            assert code is None, f"serve exited with {code}: {server.stderr()}"
            with contextlib.suppress(httpx.TransportError):
                if (await client.get(f"{server.url}/readyz")).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise AssertionError(f"{server.url} not ready after {timeout} s: {server.stderr()}")


@contextlib.asynccontextmanager
async def running_service(database_url: str, tmp_path: Path, **otel: str) -> AsyncIterator[Service]:
    """The simulator in this loop, and `visma-hooks serve` (a process) with `otel` settings,
    its webhooks coming from the simulator and its callbacks allowed to loopback."""
    port = free_port()
    sim_sock = bind_loopback()
    simulator = create_simulator_app(
        SimulatorConfig(
            webhook_url=f"http://127.0.0.1:{port}/webhooks/visma",
            webhook_secret=WEBHOOK_SECRET,
            job_duration_seconds=0.05,
            retry_base_seconds=0.05,
        )
    )
    settings = {
        "DATABASE_URL": database_url,
        **visma_settings(url_of(sim_sock)),
        "VISMA_WEBHOOK_SECRETS": WEBHOOK_SECRET,
        "API_TOKENS": API_TOKEN,
        "CALLBACK_SIGNING_SECRET": SIGNING_SECRET,
        "CALLBACK_ALLOWED_HOSTS": "127.0.0.1",
        "ALERT_POLL_SECONDS": "0.05",
        "POLL_AFTER_SECONDS": "300",  # resolved by its webhook, not by polling
        "LOG_FORMAT": "json",
        **otel,
    }
    async with serving_app(simulator, sim_sock):
        with serving(cwd=tmp_path, log=tmp_path / "serve.log", port=port, **settings) as process:
            await wait_ready(process)
            async with httpx.AsyncClient(
                base_url=process.url, headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=30
            ) as api:
                yield Service(process, api)


async def submit_with_callback(service: Service, sink: Sink, **headers: str) -> dict[str, Any]:
    response = await service.api.post(
        "/api/v1/jobs",
        json={
            "method": "POST",
            "path": "/v1/customer",
            "body": {"name": "Acme"},
            "callbackUrl": f"{sink.url}/hook/traced",
        },
        headers=headers,
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def _one(spans: list[ReceivedSpan], name: str, kind: str, **attributes: Any) -> ReceivedSpan:
    found = [
        s
        for s in spans
        if s.name == name
        and s.kind == kind
        and all(s.attributes.get(k) == v for k, v in attributes.items())
    ]
    assert len(found) == 1, (name, kind, attributes, [(s.name, s.attributes) for s in spans])
    return found[0]


def _has_whole_trace(job_id: str) -> Any:
    def found(spans: list[ReceivedSpan]) -> bool:
        mine = [s for s in spans if s.trace_id == TRACE_ID]
        names = {(s.name, s.kind) for s in mine}
        return {
            ("POST /api/v1/jobs", "server"),
            ("POST /webhooks/visma", "server"),
            ("read job state", "internal"),
            ("record outcome", "internal"),
        } <= names and any(
            s.kind == "client" and s.attributes.get("vh.job_id") == job_id for s in mine
        )

    return found


async def test_one_trace_runs_from_the_request_through_visma_to_the_callback(
    clean_database: str, sink: Sink, tmp_path: Path
) -> None:
    async with (
        running_receiver() as receiver,
        running_service(
            clean_database,
            tmp_path,
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
            OTEL_BSP_SCHEDULE_DELAY="100",
        ) as service,
    ):
        created = await submit_with_callback(service, sink, traceparent=TRACEPARENT)
        [hit] = await sink.wait_for("/hook/traced", 1, timeout=20)
        spans = await receiver.wait_for(_has_whole_trace(created["id"]))
        job = (await service.api.get(f"/api/v1/jobs/{created['id']}")).json()
    assert job["state"] == "succeeded" and job["resolvedBy"] == "webhook"
    job_id, visma_job_id = created["id"], job["vismaJobId"]
    mine = [s for s in spans if s.trace_id == TRACE_ID]

    # The submission continues the caller's trace, as a server span with HTTP attributes.
    submission = _one(mine, "POST /api/v1/jobs", "server")
    assert submission.parent_span_id == CALLER_SPAN_ID
    assert submission.attributes["http.route"] == "/api/v1/jobs"
    assert submission.attributes["http.response.status_code"] == 201
    assert submission.attributes["vh.job_id"] == job_id
    assert submission.attributes["visma.tenant"] == "sim-tenant"
    assert submission.resource["service.name"] == "visma-hooks"
    # The call to Visma: a client span under it, its URL without credentials, Visma's job id.
    visma_call = _one(mine, "POST", "client", **{"visma.job_id": visma_job_id})
    assert visma_call.parent_span_id == submission.span_id
    assert visma_call.attributes["http.response.status_code"] == 202
    assert visma_call.attributes["url.full"].endswith("/v1/customer")
    assert "@" not in visma_call.attributes["url.full"]
    # The webhook came back through Visma with the context: a child of the submission.
    webhook = _one(mine, "POST /webhooks/visma", "server")
    assert webhook.parent_span_id == submission.span_id
    assert webhook.attributes["vh.job_id"] == job_id
    assert webhook.attributes["http.response.status_code"] == 200
    # The state read it made due joins the job's trace (the context stored with the job).
    read = _one(mine, "read job state", "internal")
    assert read.parent_span_id == submission.span_id
    assert read.attributes["visma.job_id"] == visma_job_id
    state_url = f"/v1/background/{visma_job_id}"
    [state_get] = [s for s in mine if s.attributes.get("url.full", "").endswith(state_url)]
    assert state_get.kind == "client" and state_get.parent_span_id == read.span_id
    assert state_get.attributes["http.response.status_code"] == 200
    outcome = _one(mine, "record outcome", "internal")
    assert outcome.parent_span_id == read.span_id
    assert outcome.attributes["vh.job.state"] == "succeeded"
    # The callback: a client span of the job's trace, whose context the receiver got.
    callback = _one(mine, "POST", "client", **{"vh.job_id": job_id})
    assert callback.parent_span_id == submission.span_id
    assert "/hook/traced" not in callback.attributes["url.full"]  # a target's path may be secret
    assert hit.headers["traceparent"] == f"00-{TRACE_ID}-{callback.span_id}-01"
    assert hit.status == 204  # still signed as before (the sink verified it)


async def test_a_batch_job_is_sent_and_read_in_the_batch_request_s_trace(
    clean_database: str, sink: Sink, tmp_path: Path
) -> None:
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    async with (
        running_receiver() as receiver,
        running_service(
            clean_database,
            tmp_path,
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
            OTEL_BSP_SCHEDULE_DELAY="100",
            OTEL_SERVICE_NAME="billing-bridge",
        ) as service,
    ):
        item = {"method": "POST", "path": "/v1/customer", "body": {"name": "Acme"}}
        response = await service.api.post(
            "/api/v1/jobs/batch",
            json={"jobs": [item, {"method": "POST"}]},  # the second is refused alone
            headers={"traceparent": f"00-{trace_id}-{CALLER_SPAN_ID}-01"},
        )
        assert response.status_code == 200, response.text
        [made, refused] = response.json()["results"]
        assert refused["status"] == 400
        job_id = made["job"]["id"]

        def sent_and_read(spans: list[ReceivedSpan]) -> bool:
            names = {s.name for s in spans if s.trace_id == trace_id}
            return {"send job", "read job state", "record outcome"} <= names

        spans = await receiver.wait_for(sent_and_read)
    mine = [s for s in spans if s.trace_id == trace_id]
    batch = _one(mine, "POST /api/v1/jobs/batch", "server")
    assert batch.parent_span_id == CALLER_SPAN_ID
    assert batch.resource["service.name"] == "billing-bridge"
    # The resolver sends it later, as the company's budget allows, still in the batch's trace.
    send = _one(mine, "send job", "internal", **{"vh.job_id": job_id})
    assert send.parent_span_id == batch.span_id
    visma_call = _one(mine, "POST", "client")
    assert visma_call.parent_span_id == send.span_id
    assert _one(mine, "record outcome", "internal").attributes["vh.job.state"] == "succeeded"


@pytest.fixture(name="exported")
def fixture_exported() -> Iterator[InMemorySpanExporter]:
    """Tracing on in this process for the test, through a provider of its own."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with tracing.traced_with(provider):
        yield exporter
    provider.shutdown()


async def test_in_process_the_webhook_joins_the_job_s_trace_through_the_echoed_pair(
    clean_database: str, exported: InMemorySpanExporter
) -> None:
    simulator_app = create_simulator_app(SimulatorConfig(webhook_url=None))
    async with in_process(
        clean_database,
        visma_transport=httpx.ASGITransport(app=simulator_app),
        STATUS_WEBHOOK_TOKEN="s3cret-token",
    ) as harness:
        created = await harness.client.post(
            "/api/v1/jobs",
            json={"method": "POST", "path": "/v1/customer", "body": {"name": "Acme"}},
            headers={"traceparent": TRACEPARENT},
        )
        assert created.status_code == 201, created.text
        job = created.json()
        # The simulator (Visma) got the job's context as a subscription pair of its own.
        visma_job = simulator_app.state.simulator.jobs[job["vismaJobId"]]
        echoed = visma_job.background.custom_headers[TRACEPARENT_KEY]
        assert echoed.split("-")[1] == TRACE_ID
        await asyncio.sleep(0.1)  # the simulated job finishes
        body, headers = signed_delivery(
            {"id": job["vismaJobId"]}, job_id=job["id"], extra={TRACEPARENT_KEY: echoed}
        )
        answer = await harness.client.post("/webhooks/visma", content=body, headers=headers)
        assert answer.status_code == 200, answer.text
        resources = harness.resources
        assert await resolve_due_jobs(resources.sessions, resources.visma, ResolveSettings())
        status = await harness.client.post("/webhooks/status/s3cret-token", json={})
    spans = {s.name: s for s in exported.get_finished_spans()}
    submission = spans["POST /api/v1/jobs"]
    assert submission.context is not None and submission.parent is not None
    assert format(submission.parent.span_id, "016x") == CALLER_SPAN_ID
    webhook = spans["POST /webhooks/visma"]
    assert webhook.parent is not None and webhook.parent.span_id == submission.context.span_id
    assert webhook.attributes is not None and webhook.attributes["vh.job_id"] == job["id"]
    read = spans["read job state"]
    assert read.parent is not None and read.parent.span_id == submission.context.span_id
    outcome = spans["record outcome"]
    assert outcome.attributes is not None and outcome.attributes["vh.job.state"] == "succeeded"
    assert {format(s.context.trace_id, "032x") for s in spans.values() if s.context} >= {TRACE_ID}
    # A status webhook is a trace of its own, and its token is named nowhere.
    status_span = spans["POST /webhooks/status/{token}"]
    assert status_span.parent is None and status_span.attributes is not None
    assert status_span.attributes["http.response.status_code"] == status.status_code
    assert "s3cret-token" not in repr(dict(status_span.attributes))


@pytest.mark.parametrize(
    ("method", "path", "route"),
    [
        ("POST", "/api/v1/jobs", "/api/v1/jobs"),
        ("POST", "/api/v1/jobs/batch", "/api/v1/jobs/batch"),
        ("POST", "/api/v1/issues/i-1/resend", "/api/v1/issues/i-1/resend"),
        # A status webhook's path holds its secret token: only the template is named.
        ("POST", "/webhooks/status/s3cret-token", "/webhooks/status/{token}"),
        ("GET", "/api/v1/jobs", None),
        ("POST", "/api/v1/deliveries/d-1/replay", None),
        ("POST", "/webhooks/visma", None),  # the fast lane's own span (TracedWebhook)
    ],
)
def test_traced_route_names_only_the_routes_a_trace_follows(
    method: str, path: str, route: str | None
) -> None:
    assert traced_route(method, path) == route


async def test_tracing_is_off_unless_an_exporter_or_endpoint_is_set(
    clean_database: str, sink: Sink, tmp_path: Path
) -> None:
    async with (
        running_receiver() as receiver,
        # An exporter endpoint of its own does not turn tracing on (only the two switches do).
        running_service(
            clean_database,
            tmp_path,
            OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=f"{receiver.url}/v1/traces",
            OTEL_BSP_SCHEDULE_DELAY="100",
        ) as service,
    ):
        created = await submit_with_callback(service, sink, traceparent=TRACEPARENT)
        [hit] = await sink.wait_for("/hook/traced", 1, timeout=20)
        await asyncio.sleep(0.5)  # longer than the batch delay: anything made would be sent
        stored = await service.api.get(f"/api/v1/jobs/{created['id']}")
    assert stored.json()["state"] == "succeeded"
    assert receiver.exports == 0 and receiver.spans == []
    assert "traceparent" not in hit.headers
    log_text = service.process.stderr()
    assert "trace_id" not in log_text


@pytest.mark.parametrize(
    ("extra", "service_name"),
    [({}, "visma-hooks"), ({"OTEL_SERVICE_NAME": "billing-bridge"}, "billing-bridge")],
)
def test_console_exporter_prints_spans_and_log_lines_carry_the_trace_ids(
    tmp_path: Path, extra: dict[str, str], service_name: str
) -> None:
    script = (
        "import logging\n"
        "from service import tracing\n"
        "from service.logs import configure_logging\n"
        "traced = tracing.configure_tracing()\n"
        "configure_logging(fmt='json', traced=traced)\n"
        "with tracing.span('tried', attributes={tracing.JOB_ID: 'j-1'}):\n"
        "    logging.getLogger('probe').warning('inside')\n"
        "logging.getLogger('probe').warning('outside')\n"
        "tracing.shutdown_tracing()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=cli_env(OTEL_TRACES_EXPORTER="console", **extra),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    printed = json.loads(done.stdout)  # the SDK's console exporter: one span as JSON
    assert printed["name"] == "tried"
    assert printed["attributes"]["vh.job_id"] == "j-1"
    assert printed["resource"]["attributes"]["service.name"] == service_name
    inside, outside = (json.loads(line) for line in done.stderr.splitlines())
    assert inside["event"] == "inside"
    assert inside["trace_id"] == printed["context"]["trace_id"].removeprefix("0x")
    assert inside["span_id"] == printed["context"]["span_id"].removeprefix("0x")
    assert "trace_id" not in outside


def test_otel_sdk_disabled_keeps_tracing_off(tmp_path: Path) -> None:
    script = (
        "from service import tracing\n"
        "print(tracing.configure_tracing())\n"
        "with tracing.span('tried'):\n"
        "    pass\n"
        "tracing.shutdown_tracing()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=cli_env(OTEL_TRACES_EXPORTER="console", OTEL_SDK_DISABLED="true"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout == "False\n"


def test_traceparent_travels_in_a_subscription_pair_the_simulator_echoes() -> None:
    header = background_header("job-1", {"order": "42"}, notify=True, traceparent=TRACEPARENT)
    echoed = parse_background_header(header).custom_headers
    assert echoed == {"vh-job-id": "job-1", "order": "42", TRACEPARENT_KEY: TRACEPARENT}
    # Nothing but a W3C traceparent goes out or is believed when it comes back.
    assert background_header("job-1", {}, notify=True, traceparent="x,y=z") == (
        "subscription:vh-job-id=job-1"
    )
    assert valid_traceparent(f" {TRACEPARENT} ") == TRACEPARENT
    assert valid_traceparent("00-zz-00f067aa0ba902b7-01") is None


def test_configure_tracing_does_nothing_without_a_switch() -> None:
    assert (
        tracing.configure_tracing({"OTEL_SERVICE_NAME": "x", "OTEL_TRACES_SAMPLER": "on"}) is False
    )
    assert tracing.configure_tracing({"OTEL_EXPORTER_OTLP_ENDPOINT": ""}) is False
    assert not tracing.enabled and tracing.current_traceparent() is None
    headers: dict[str, str] = {}
    tracing.inject(headers)
    assert headers == {}


def test_client_attributes_never_carry_credentials() -> None:
    attributes = tracing.http_client_attributes("GET", "https://user:pw@api.example/v1/x?a=1")
    assert attributes == {
        "http.request.method": "GET",
        "url.full": "https://api.example/v1/x?a=1",
        "server.address": "api.example",
        "server.port": 443,
    }
    assert tracing.url_without_credentials("http://h:8080/p") == "http://h:8080/p"


def test_a_send_that_got_no_answer_marks_its_span_failed(
    exported: InMemorySpanExporter,
) -> None:
    with tracing.client_span("POST", "https://hooks.example/...#ab12cd34") as span:
        tracing.set_failed(span, "ConnectError: refused")
    with tracing.client_span("POST", "https://hooks.example/") as span:
        tracing.set_http_status(span, 404)
    with tracing.server_span("POST /x", {"traceparent": "garbage"}) as span:
        tracing.set_http_status(span, 404)
    failed, refused, server = exported.get_finished_spans()
    assert failed.status.status_code.name == "ERROR"
    assert failed.status.description == "ConnectError: refused"
    assert refused.status.status_code.name == "ERROR"  # a 4xx fails a client span
    assert server.status.status_code.name == "UNSET"  # ... not a server's (the caller's fault)
    assert server.parent is None  # a malformed traceparent is not continued
