"""The Visma.net simulator, over real HTTP: token, background jobs, state, content, webhooks."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.simulator import (
    BackgroundHeaderError,
    Outcome,
    SimulatorConfig,
    SimulatorState,
    create_simulator_app,
    parse_background_header,
)
from service.visma import signatures

SCOPES = "vismanet_erp_service_api:create vismanet_erp_service_api:read"
STATE_KEYS = {
    "id",
    "status",
    "statusCode",
    "receivedUtc",
    "startedUtc",
    "finishedUtc",
    "webhookAddress",
    "errorMessage",
    "reference",
    "originalUri",
    "hasResponseContent",
    "hasRequestContent",
    "contentLocation",
    "responseHeaders",
}
IPP_KEYS = {
    "ExceptionType",
    "ExceptionMessage",
    "ExceptionFaultCode",
    "ExceptionMessageID",
    "ExceptionDetails",
}
UTC_FORMAT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@contextlib.asynccontextmanager
async def serve(app: Starlette) -> AsyncIterator[str]:
    """Run `app` with uvicorn on a free loopback port; yield its base URL."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, lifespan="on", ws="none", log_level="warning"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()  # startup failed: raise why
        await asyncio.sleep(0.002)
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        await task


@dataclass
class Received:
    headers: Headers
    body: bytes
    at: float


@dataclass
class Receiver:
    """A webhook listener that records deliveries and fails the first `fail_first` of them."""

    fail_first: int = 0
    deliveries: list[Received] = field(default_factory=list)
    url: str = ""

    def reset(self) -> None:
        self.fail_first = 0
        self.deliveries.clear()

    async def receive(self, request: Request) -> Response:
        self.deliveries.append(Received(request.headers, await request.body(), time.monotonic()))
        if len(self.deliveries) <= self.fail_first:
            return Response(status_code=500)
        return Response(status_code=204)

    def for_job(self, job_id: str) -> list[Received]:
        return [d for d in self.deliveries if json.loads(d.body)["id"] == job_id]


@pytest.fixture(name="receiver_server", scope="module")
async def fixture_receiver_server() -> AsyncIterator[Receiver]:
    # One listener for the module keeps the suite fast (each uvicorn shutdown costs ~0.2 s).
    receiver = Receiver()
    app = Starlette(routes=[Route("/hooks", receiver.receive, methods=["POST"])])
    async with serve(app) as url:
        receiver.url = f"{url}/hooks"
        yield receiver


@pytest.fixture(name="receiver")
def fixture_receiver(receiver_server: Receiver) -> Receiver:
    receiver_server.reset()
    return receiver_server


@pytest.fixture(name="config")
def fixture_config(receiver: Receiver) -> SimulatorConfig:
    return SimulatorConfig(
        webhook_url=receiver.url, retry_base_seconds=0.01, job_duration_seconds=0.02
    )


@pytest.fixture(name="simulator_app")
def fixture_simulator_app(config: SimulatorConfig) -> Starlette:
    return create_simulator_app(config)


@pytest.fixture(name="sim")
def fixture_sim(simulator_app: Starlette) -> SimulatorState:
    simulator: SimulatorState = simulator_app.state.simulator
    return simulator


@pytest.fixture(name="base_url")
async def fixture_base_url(simulator_app: Starlette) -> AsyncIterator[str]:
    async with serve(simulator_app) as url:
        yield url


@pytest.fixture(name="client")
async def fixture_client(base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=base_url) as client:
        yield client


@pytest.fixture(name="api")
async def fixture_api(client: httpx.AsyncClient, config: SimulatorConfig) -> httpx.AsyncClient:
    """The client, carrying a valid bearer token."""
    return await authorize(client, config)


@pytest.fixture(name="local")
async def fixture_local(simulator_app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process client (no lifespan, so no webhooks), for request validation."""
    transport = httpx.ASGITransport(app=simulator_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


@pytest.fixture(name="local_api")
async def fixture_local_api(local: httpx.AsyncClient, config: SimulatorConfig) -> httpx.AsyncClient:
    return await authorize(local, config)


async def authorize(client: httpx.AsyncClient, config: SimulatorConfig) -> httpx.AsyncClient:
    token = await client.post("/connect/token", data=token_form(config))
    client.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
    return client


def token_form(config: SimulatorConfig, **changes: str | None) -> dict[str, str]:
    form = {
        "grant_type": "client_credentials",
        "client_id": config.client_id,
        "client_secret": config.client_secret,
        "scope": SCOPES,
        "tenant_id": config.tenant_id,
    } | changes
    return {key: value for key, value in form.items() if value is not None}


async def submit(
    api: httpx.AsyncClient,
    path: str = "/v1/customer",
    *,
    header: str = "subscription:vh-job-id=42",
    method: str = "POST",
) -> httpx.Response:
    response = await api.request(
        method, path, json={"name": "Acme"}, headers={"erp-api-background": header}
    )
    assert response.status_code == 202, response.text
    return response


async def finished_state(
    sim: SimulatorState, api: httpx.AsyncClient, job_id: str
) -> dict[str, Any]:
    await sim.wait_until(lambda: sim.jobs[job_id].done)
    state: dict[str, Any] = (await api.get(sim.jobs[job_id].state_location)).json()
    return state


async def test_issue_token_answers_bearer_token_and_counts(
    client: httpx.AsyncClient, sim: SimulatorState, config: SimulatorConfig
) -> None:
    response = await client.post("/connect/token", data=token_form(config))

    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == config.token_ttl_seconds
    assert body["scope"] == SCOPES
    assert body["access_token"]
    assert response.headers["cache-control"] == "no-store"
    assert sim.tokens_issued == 1


async def test_issue_token_accepts_basic_client_authentication(
    local: httpx.AsyncClient, config: SimulatorConfig
) -> None:
    form = token_form(config, client_id=None, client_secret=None)
    auth = (config.client_id, config.client_secret)

    response = await local.post("/connect/token", data=form, auth=auth)

    assert response.status_code == 200


@pytest.mark.parametrize(
    ("changes", "status", "error"),
    [
        ({"client_secret": "wrong"}, 401, "invalid_client"),
        ({"client_id": "someone-else"}, 401, "invalid_client"),
        ({"client_secret": None}, 401, "invalid_client"),
        ({"grant_type": None}, 400, "invalid_request"),
        ({"grant_type": "password"}, 400, "unsupported_grant_type"),
        ({"scope": None}, 400, "invalid_scope"),
        ({"scope": "openid vismanet_erp_service_api:read"}, 400, "invalid_scope"),
        ({"scope": "vismanet_erp_service_api:admin"}, 400, "invalid_scope"),
        ({"tenant_id": None}, 400, "invalid_request"),
        ({"tenant_id": "customer-contract-tenant"}, 400, "invalid_request"),
    ],
)
async def test_issue_token_refuses_bad_grants(
    local: httpx.AsyncClient,
    sim: SimulatorState,
    config: SimulatorConfig,
    changes: dict[str, str | None],
    status: int,
    error: str,
) -> None:
    response = await local.post("/connect/token", data=token_form(config, **changes))

    assert response.status_code == status
    assert response.json()["error"] == error
    assert sim.tokens_issued == 0


async def test_issue_token_refuses_json(local: httpx.AsyncClient, config: SimulatorConfig) -> None:
    response = await local.post("/connect/token", json=token_form(config))

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


@pytest.mark.parametrize("authorization", [None, "Bearer not-a-token", "Basic c2ltOnNpbQ=="])
async def test_call_api_requires_valid_token(
    local: httpx.AsyncClient, sim: SimulatorState, authorization: str | None
) -> None:
    headers = {"erp-api-background": "subscription"}
    if authorization:
        headers["Authorization"] = authorization

    response = await local.post("/v1/customer", json={}, headers=headers)

    assert response.status_code == 401
    assert response.json()["ExceptionType"] == "IPPException"
    assert sim.jobs == {}


async def test_call_api_refuses_expired_token_in_process() -> None:
    config = SimulatorConfig(token_ttl_seconds=0, public_base_url="https://api.example.test")
    app = create_simulator_app(config)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        token = (await client.post("/connect/token", data=token_form(config))).json()

        response = await client.get(
            "/v1/customer", headers={"Authorization": f"Bearer {token['access_token']}"}
        )

    assert response.status_code == 401


async def test_call_api_accepts_and_runs_background_job(
    api: httpx.AsyncClient, sim: SimulatorState, base_url: str
) -> None:
    sim.script(Outcome(duration_seconds=0.2))

    accepted = await submit(api, header="subscription")
    started = await api.get(accepted.json()["stateLocation"])

    body = accepted.json()
    assert set(body) == {"id", "stateLocation"}
    assert body["stateLocation"] == f"{base_url}/v1/background/{body['id']}"
    state = started.json()
    assert set(state) == STATE_KEYS
    assert state["status"] == "Started"
    assert state["statusCode"] == 0
    assert state["finishedUtc"] is None
    assert state["contentLocation"] is None
    assert state["hasRequestContent"] is True
    assert state["originalUri"] == f"{base_url}/v1/customer"
    assert UTC_FORMAT.match(state["receivedUtc"])

    finished = await finished_state(sim, api, body["id"])

    assert finished["status"] == "Finished"
    assert finished["statusCode"] == 201
    assert UTC_FORMAT.match(finished["finishedUtc"])
    assert finished["webhookAddress"] == "subscription"
    assert finished["hasResponseContent"] is False
    assert re.fullmatch(
        rf"{re.escape(base_url)}/v1/customer/\d+", finished["responseHeaders"]["Location"]
    )
    content = await api.get(f"/v1/background/{body['id']}/content")
    assert content.status_code == 404


async def test_call_api_keeps_older_layout_in_locations(
    api: httpx.AsyncClient, sim: SimulatorState, base_url: str
) -> None:
    accepted = await submit(api, "/api/v2/supplierInvoice")

    state = await finished_state(sim, api, accepted.json()["id"])

    assert accepted.json()["stateLocation"].startswith(f"{base_url}/api/v1/background/")
    assert state["responseHeaders"]["Location"].startswith(f"{base_url}/api/v2/supplierInvoice/")


@pytest.mark.parametrize(("method", "status_code"), [("GET", 200), ("PUT", 204), ("DELETE", 204)])
async def test_call_api_success_status_follows_method(
    local_api: httpx.AsyncClient, sim: SimulatorState, method: str, status_code: int
) -> None:
    accepted = await submit(local_api, "/v1/customer/20417", method=method)

    state = await finished_state(sim, local_api, accepted.json()["id"])

    assert state["statusCode"] == status_code
    assert "Location" not in state["responseHeaders"]


async def test_read_content_returns_no_license_ipp_exception(
    api: httpx.AsyncClient, sim: SimulatorState
) -> None:
    sim.script(Outcome(kind="no_license"))
    accepted = await submit(api)

    state = await finished_state(sim, api, accepted.json()["id"])
    content = await api.get(state["contentLocation"])

    assert state["status"] == "Finished"
    assert state["statusCode"] == 400
    assert state["hasResponseContent"] is True
    body = content.json()
    assert set(body) == IPP_KEYS
    assert body["ExceptionMessage"] == "No license for this company."
    assert body["ExceptionFaultCode"] == "12027"
    assert re.fullmatch(r"12027_[0-9a-f-]{36}", body["ExceptionMessageID"])
    assert content.headers["content-type"].startswith("application/json")


@pytest.mark.parametrize(
    ("message", "expected"),
    [(None, "Invalid value for field 'x'"), ("Customer name is required.", None)],
)
async def test_read_content_returns_bad_request_message(
    api: httpx.AsyncClient, sim: SimulatorState, message: str | None, expected: str | None
) -> None:
    sim.script(Outcome(kind="bad_request", message=message))
    accepted = await submit(api)

    state = await finished_state(sim, api, accepted.json()["id"])
    content = await api.get(state["contentLocation"])

    assert state["statusCode"] == 400
    assert content.json() == {"message": expected or message}


async def test_call_api_failed_and_action_accepted_outcomes(
    api: httpx.AsyncClient, sim: SimulatorState
) -> None:
    sim.script(Outcome(kind="failed", message="Timeout"), Outcome(kind="action_accepted"))
    failed = await submit(api)
    action = await submit(api, "/v1/supplierInvoice/004512/action/release")

    failed_state = await finished_state(sim, api, failed.json()["id"])
    action_state = await finished_state(sim, api, action.json()["id"])

    assert failed_state["status"] == "Failed"
    assert failed_state["errorMessage"] == "Timeout"
    assert failed_state["contentLocation"] is None
    assert action_state["status"] == "Finished"
    assert action_state["statusCode"] == 202


async def test_call_api_rejects_submission_without_job(
    local_api: httpx.AsyncClient, sim: SimulatorState
) -> None:
    sim.script(Outcome(kind="reject", reject_status=403, fault_code="12002", message="No access"))

    response = await local_api.post(
        "/v1/customer", json={}, headers={"erp-api-background": "subscription"}
    )

    assert response.status_code == 403
    assert response.json()["ExceptionFaultCode"] == "12002"
    assert sim.jobs == {}


@pytest.mark.parametrize(
    "header",
    [
        "subscription:",
        "subscription:vh-job-id",
        "subscription:a=b=c",
        "subscription:a=1,,b=2",
        "subscription:a=1,A=2",
        "subscription:=1",
        "subscription:bad key=1",
        "subscription:x-vwd-notification-id=spoofed",
        "https://hooks.example.com/visma",
        "none:a=1",
        "",
    ],
)
async def test_call_api_refuses_malformed_background_header(
    local_api: httpx.AsyncClient, sim: SimulatorState, header: str
) -> None:
    response = await local_api.post("/v1/customer", json={}, headers={"erp-api-background": header})

    assert response.status_code == 400
    assert response.json()["message"]
    assert sim.jobs == {}


def test_parse_background_header_reads_custom_headers() -> None:
    assert parse_background_header("subscription").custom_headers == {}
    assert parse_background_header("none").webhook_address == "none"
    parsed = parse_background_header("subscription:vh-job-id=42,orderRef=SO-1,empty=")
    assert parsed.webhook_address == "subscription"
    assert parsed.custom_headers == {"vh-job-id": "42", "orderRef": "SO-1", "empty": ""}
    with pytest.raises(BackgroundHeaderError):
        parse_background_header("subscription:a=1,b")


async def test_dispatcher_sends_signed_webhook_with_all_headers(
    api: httpx.AsyncClient,
    sim: SimulatorState,
    receiver: Receiver,
    config: SimulatorConfig,
) -> None:
    sim.script(Outcome(kind="bad_request"))
    before_ms = time.time() * 1000
    accepted = await submit(api, header="subscription:vh-job-id=0d9e8f7a,orderRef=SO-88213")
    job_id = accepted.json()["id"]

    # The simulator records an attempt once the answer is back, after the receiver saw it.
    await sim.wait_until(lambda: len(sim.deliveries) == 1)

    delivery = receiver.deliveries[0]
    headers = delivery.headers
    assert signatures.verify(
        delivery.body, headers[signatures.SIGNATURE_HEADER], [config.webhook_secret]
    )
    assert json.loads(delivery.body) == {
        "id": job_id,
        "stateLocation": accepted.json()["stateLocation"],
        "contentLocation": f"{accepted.json()['stateLocation']}/content",
    }
    assert b" " not in delivery.body  # compact JSON
    assert headers["content-type"] == "application/json"
    assert headers["vh-job-id"] == "0d9e8f7a"
    assert headers["orderref"] == "SO-88213"
    assert headers[signatures.EVENT_ID_HEADER] == "BACKGROUND_API_RESPONSE"
    assert headers[signatures.SUBSCRIPTION_ID_HEADER] == config.subscription_id
    assert headers[signatures.TENANT_ID_HEADER] == config.tenant_id
    assert headers[signatures.APPLICATION_ID_HEADER] == config.application_id
    assert headers[signatures.APPLICATION_VERSION_HEADER] == "1"
    assert headers[signatures.GROUP_ID_HEADER]
    assert headers[signatures.NOTIFICATION_ID_HEADER] == sim.jobs[job_id].notification_ids[0]
    for name in (signatures.NOTIFICATION_TIMESTAMP_HEADER, signatures.WEBHOOK_TIMESTAMP_HEADER):
        assert before_ms - 1 <= int(headers[name]) <= time.time() * 1000 + 1
    assert [(a.attempt, a.status_code, a.job_id) for a in sim.deliveries] == [(1, 204, job_id)]


async def test_dispatcher_leaves_content_location_out_without_content(
    api: httpx.AsyncClient, sim: SimulatorState, receiver: Receiver
) -> None:
    accepted = await submit(api)

    await sim.wait_until(lambda: len(sim.deliveries) == 1)

    assert set(json.loads(receiver.deliveries[0].body)) == {"id", "stateLocation"}
    assert accepted.json()["id"] == json.loads(receiver.deliveries[0].body)["id"]


async def test_dispatcher_retries_with_same_notification_id(
    api: httpx.AsyncClient, sim: SimulatorState, receiver: Receiver
) -> None:
    receiver.fail_first = 2
    await submit(api)

    await sim.wait_until(lambda: len(sim.deliveries) == 3)

    ids = {d.headers[signatures.NOTIFICATION_ID_HEADER] for d in receiver.deliveries}
    assert len(ids) == 1
    assert len({d.body for d in receiver.deliveries}) == 1
    assert [(a.attempt, a.status_code) for a in sim.deliveries] == [(1, 500), (2, 500), (3, 204)]
    assert {a.notification_id for a in sim.deliveries} == ids


async def test_dispatcher_gives_up_after_max_attempts(
    api: httpx.AsyncClient, sim: SimulatorState, receiver: Receiver, config: SimulatorConfig
) -> None:
    config.max_delivery_attempts = 3
    receiver.fail_first = 100
    await submit(api)

    await sim.wait_until(lambda: sim.stats()["deliveries"]["gave_up"] == 1)
    await sim.wait_until(lambda: sim.dispatcher.pending == 0)

    assert [a.attempt for a in sim.deliveries] == [1, 2, 3]
    assert len(receiver.deliveries) == 3


async def test_dispatcher_records_connection_errors(
    api: httpx.AsyncClient, sim: SimulatorState, config: SimulatorConfig
) -> None:
    config.webhook_url = "http://127.0.0.1:9/unreachable"  # discard port: refused
    config.max_delivery_attempts = 2
    await submit(api)

    await sim.wait_until(lambda: len(sim.deliveries) == 2)

    assert all(a.status_code is None and a.error for a in sim.deliveries)


async def test_dispatcher_drops_and_skips_none(
    api: httpx.AsyncClient, sim: SimulatorState, receiver: Receiver
) -> None:
    sim.script(Outcome(webhook="drop"))
    dropped = await submit(api)
    silent = await submit(api, header="none")
    sent = await submit(api)

    await sim.wait_until(lambda: len(sim.deliveries) == 1)
    await sim.wait_until(lambda: sim.jobs[silent.json()["id"]].done)

    assert receiver.for_job(sent.json()["id"])
    assert not receiver.for_job(dropped.json()["id"])
    assert sim.jobs[dropped.json()["id"]].done
    assert sim.stats()["deliveries"]["dropped"] == 1
    state = await finished_state(sim, api, silent.json()["id"])
    assert state["webhookAddress"] == "none"


async def test_dispatcher_duplicates_notification(
    api: httpx.AsyncClient, sim: SimulatorState, receiver: Receiver
) -> None:
    sim.script(Outcome(duplicate_webhook=True))
    await submit(api)

    await sim.wait_until(lambda: len(sim.deliveries) == 2)

    first, second = receiver.deliveries
    assert first.body == second.body
    notification_id = signatures.NOTIFICATION_ID_HEADER
    assert first.headers[notification_id] == second.headers[notification_id]
    assert sorted(a.copy for a in sim.deliveries) == [0, 1]


async def test_dispatcher_delivers_before_accept(
    api: httpx.AsyncClient, sim: SimulatorState, receiver: Receiver
) -> None:
    sim.script(Outcome(webhook_before_accept=True))

    accepted = await submit(api)
    answered = time.monotonic()

    assert len(receiver.deliveries) == 1
    assert receiver.deliveries[0].at < answered
    assert json.loads(receiver.deliveries[0].body)["id"] == accepted.json()["id"]
    assert sim.jobs[accepted.json()["id"]].status == "Finished"


async def test_control_api_scripts_and_reports(
    client: httpx.AsyncClient, api: httpx.AsyncClient, sim: SimulatorState, receiver: Receiver
) -> None:
    scripted = await client.post(
        "/_sim/outcomes",
        json=[
            {"kind": "bad_request", "path": r"/supplierInvoice/", "times": None},
            {"kind": "reject", "reject_status": 429},
        ],
    )
    rejected = await api.post(
        "/v1/customer", json={}, headers={"erp-api-background": "subscription"}
    )
    first = await submit(api, "/v1/supplierInvoice/1/action/release")
    second = await submit(api, "/v1/supplierInvoice/2/action/release")
    plain = await submit(api)
    await sim.wait_until(lambda: len(sim.deliveries) == 3)
    for _ in range(2):
        await api.get(first.json()["stateLocation"])

    assert scripted.status_code == 201
    assert rejected.status_code == 429
    jobs = (await client.get("/_sim/jobs")).json()["items"]
    by_id = {job["id"]: job for job in jobs}
    assert by_id[first.json()["id"]]["state"]["statusCode"] == 400
    assert by_id[second.json()["id"]]["state"]["statusCode"] == 400
    assert by_id[plain.json()["id"]]["state"]["statusCode"] == 201
    request = by_id[plain.json()["id"]]["request"]
    assert request["method"] == "POST"
    assert request["path"] == "/v1/customer"
    assert request["headers"]["erp-api-background"] == "subscription:vh-job-id=42"
    assert json.loads(request["body"]) == {"name": "Acme"}
    reads = await client.get("/_sim/requests", params={"job_id": first.json()["id"]})
    assert [r["method"] for r in reads.json()["items"]] == ["POST", "GET", "GET"]
    deliveries = (await client.get("/_sim/deliveries")).json()["items"]
    assert len(deliveries) == 3
    stats = (await client.get("/_sim/stats")).json()
    assert stats["tokens_issued"] == 1
    assert stats["jobs"]["total"] == 3
    assert stats["deliveries"]["delivered"] == 3
    assert stats["outcomes_pending"] == 1  # the standing rule
    assert (await client.delete("/_sim/outcomes")).status_code == 204
    assert (await client.get("/_sim/outcomes")).json()["items"] == []


@pytest.mark.parametrize(
    "outcome",
    ['{"kind": "explode"}', '{"colour": "red"}', '{"times": 0}', '{"times": true}', "[", "3"],
)
async def test_control_api_refuses_bad_outcomes(local: httpx.AsyncClient, outcome: str) -> None:
    response = await local.post(
        "/_sim/outcomes", content=outcome, headers={"content-type": "application/json"}
    )

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_outcome_round_trips_through_json() -> None:
    # to_json writes every field and from_json refuses unknown ones, so this also catches a
    # field added to Outcome but not to the JSON type table.
    outcome = Outcome(kind="ipp_error", fault_code="19999", headers={"ETag": "1"})
    assert Outcome.from_json(outcome.to_json()) == outcome


async def test_read_state_unknown_job_is_404(local_api: httpx.AsyncClient) -> None:
    response = await local_api.get("/v1/background/00000000-0000-0000-0000-000000000000")

    assert response.status_code == 404


async def test_call_api_without_header_answers_now(
    local_api: httpx.AsyncClient, sim: SimulatorState
) -> None:
    created = await local_api.post("/v1/customer", json={"name": "Acme"})
    sim.script(Outcome(kind="bad_request"))
    refused = await local_api.post("/v1/customer", json={"name": "Acme"})

    assert created.status_code == 201
    assert created.headers["location"].rsplit("/", 1)[1].isdigit()
    assert refused.status_code == 400
    assert sim.jobs == {}
