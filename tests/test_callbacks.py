"""Per-job callbacks: the job's JSON POSTed to its callbackUrl through the outbox when it ends,
signed per Standard Webhooks (verified by the sink with the standardwebhooks library), retried,
every attempt on the job; URLs that could reach private networks refused at submission and at
send time. Real servers over loopback against the simulator."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from standardwebhooks.webhooks import Webhook
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service import store
from service.domain import InvalidInput, callback_refusal, validate_callback_url
from service.flows import CALLBACK, OutboxSettings, SendResult
from service.simulator import Outcome
from service.workers import AlertSender
from tests.servers import bind_loopback
from tests.sink import SIGNING_SECRET, Sink
from tests.stack import Stack, running_stack

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    ("url", "addresses", "allowed", "refused"),
    [
        ("https://hooks.example/x", ["93.184.216.34"], [], None),
        ("https://hooks.example/x", ["93.184.216.34", "10.0.0.7"], [], "not a public address"),
        ("https://hooks.example/x", ["::ffff:127.0.0.1"], [], "not a public address"),
        ("https://hooks.example/x", ["fd00::1"], [], "not a public address"),
        ("https://hooks.example/x", ["169.254.169.254"], [], "not a public address"),
        ("http://hooks.example/x", ["93.184.216.34"], [], "must use https"),
        ("http://hooks.example/x", ["127.0.0.1"], ["HOOKS.example"], None),
        ("https://hooks.example/x", [], [], "does not resolve"),
    ],
)
def test_callback_refusal(url, addresses, allowed, refused) -> None:
    why = callback_refusal(url, addresses, allowed_hosts=allowed)
    assert (why is None) if refused is None else (refused in (why or ""))


@pytest.mark.parametrize(
    "url",
    ["ftp://hooks.example/x", "https:///x", "https://u:p@hooks.example/", "https://h/x#f", "/x"],
)
def test_validate_callback_url_refuses_what_is_no_callback_target(url: str) -> None:
    with pytest.raises(InvalidInput):
        validate_callback_url(url)


def _callback_settings(**overrides: Any) -> dict[str, Any]:
    return {
        "CALLBACK_SIGNING_SECRET": SIGNING_SECRET,
        "CALLBACK_ALLOWED_HOSTS": ["127.0.0.1"],
        "ALERT_POLL_SECONDS": 0.05,
        "ALERT_RETRY_BASE_SECONDS": 0.05,
        "POLL_AFTER_SECONDS": 300,
        **overrides,
    }


async def _callback_sent(stack: Stack, job_id: str, *, attempts: int) -> dict[str, Any]:
    import time

    deadline = time.monotonic() + 15
    while True:
        job = await stack.job(job_id)
        callback = job.get("callback") or {}
        if callback.get("state") == "sent" and len(callback["attempts"]) >= attempts:
            return job
        assert time.monotonic() < deadline, job.get("callback")
        await asyncio.sleep(0.05)


async def test_callback_posts_the_signed_job_json_when_the_job_ends(
    clean_database: str, sink: Sink
) -> None:
    async with running_stack(clean_database, **_callback_settings()) as stack:
        url = f"{sink.url}/hook/cb"
        created = await stack.submit(body={"name": "Acme"}, callbackUrl=url)
        assert created["callbackUrl"] == url
        [hit] = await sink.wait_for("/hook/cb", 1)
        job = await _callback_sent(stack, created["id"], attempts=1)
    sent = hit.json()
    assert sent["id"] == created["id"] and sent["state"] == "succeeded"
    assert sent["callbackUrl"] == url
    assert hit.headers["webhook-id"] == f"job_{created['id']}"
    assert hit.status == 204  # the sink verified the signature with the standardwebhooks library
    assert [a["statusCode"] for a in job["callback"]["attempts"]] == [204]


async def test_callback_is_retried_and_every_attempt_shows_on_the_job(
    clean_database: str, sink: Sink
) -> None:
    sink.fail_next["/hook/retry"] = 2
    async with running_stack(clean_database, **_callback_settings()) as stack:
        stack.simulator.script(Outcome(kind="no_license"))
        created = await stack.submit(body={"name": "Acme"}, callbackUrl=f"{sink.url}/hook/retry")
        [hit] = await sink.wait_for("/hook/retry", 1)
        job = await _callback_sent(stack, created["id"], attempts=3)
    assert hit.json()["state"] == "failed"
    assert [a["statusCode"] for a in job["callback"]["attempts"]] == [500, 500, 204]
    # The list shows the URL too; the attempts only in the single view.
    assert job["callbackUrl"] == f"{sink.url}/hook/retry"


@pytest.mark.parametrize(
    ("url", "detail"),
    [
        ("http://hooks.example/x", "must use https"),
        ("https://10.1.2.3/x", "not a public address"),
        ("https://127.0.0.1:9/x", "not a public address"),
        ("https://[::1]/x", "not a public address"),
        ("ftp://hooks.example/x", "absolute https:// URL"),
        ("https://user:pw@hooks.example/x", "credentials"),
    ],
)
async def test_create_job_refuses_a_callback_url_that_is_not_public_https(
    clean_database: str, url: str, detail: str
) -> None:
    async with running_stack(
        clean_database, **_callback_settings(CALLBACK_ALLOWED_HOSTS=[])
    ) as stack:
        response = await stack.api.post(
            "/api/v1/jobs", json={"method": "POST", "path": "/v1/customer", "callbackUrl": url}
        )
        assert response.status_code == 400, response.text
        assert detail in response.json()["detail"]
        listed = (await stack.api.get("/api/v1/jobs")).json()
        assert listed["metadata"]["totalCount"] == 0  # nothing was written or sent


async def test_create_job_accepts_https_on_a_public_address(clean_database: str) -> None:
    async with running_stack(clean_database, **_callback_settings()) as stack:
        stack.simulator.script(Outcome(webhook="drop"))
        job = await stack.submit(body={}, callbackUrl="https://93.184.216.34/hook")
    assert job["callbackUrl"] == "https://93.184.216.34/hook"


async def test_create_job_with_a_callback_needs_the_signing_secret(clean_database: str) -> None:
    async with running_stack(
        clean_database, **_callback_settings(CALLBACK_SIGNING_SECRET="")
    ) as stack:
        response = await stack.api.post(
            "/api/v1/jobs",
            json={"method": "POST", "path": "/v1/customer", "callbackUrl": "https://1.1.1.1/"},
        )
    assert response.status_code == 503
    assert "CALLBACK_SIGNING_SECRET" in response.json()["detail"]


async def test_callback_target_is_checked_again_at_send_time(clean_database: str) -> None:
    """A target allowed when the job was submitted but not any more (the host's name now
    resolves to a private address, or the allow-list changed) is not called."""
    engine = store.create_engine(clean_database)
    sessions: async_sessionmaker[AsyncSession] = store.create_sessionmaker(engine)
    sender = AlertSender(
        sessions, OutboxSettings(), signing_secret="", callback_secret=SIGNING_SECRET
    )
    try:
        result = await sender.send(
            store.ClaimedDelivery(
                id=1,
                alert_id=None,
                job_id="j-1",
                channel=CALLBACK,
                target="https://127.0.0.1:9/never",
                attempts=0,
                body={"id": "j-1"},
            )
        )
    finally:
        await sender.aclose()
        await engine.dispose()
    assert result.status_code is None
    assert result.error is not None and "not a public address" in result.error
    assert result.at <= datetime.now(UTC)


@pytest.fixture(name="tls_files", scope="module")
def fixture_tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed certificate for the name `localhost` (no IP address in it)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return str(cert), str(key)


async def test_callback_over_https_connects_to_the_checked_address_and_verifies_the_name(
    clean_database: str, tls_files: tuple[str, str]
) -> None:
    cert, key = tls_files
    seen: list[dict[str, str]] = []

    async def receive(request: Request) -> Response:
        body = await request.body()
        Webhook(SIGNING_SECRET).verify(body, dict(request.headers))
        seen.append(dict(request.headers))
        return Response(status_code=204)

    sock = bind_loopback()
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        Starlette(routes=[Route("/hook", receive, methods=["POST"])]),
        ssl_certfile=cert,
        ssl_keyfile=key,
        log_level="warning",
        lifespan="off",
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    engine = store.create_engine(clean_database)

    async def send(target: str, allowed: list[str]) -> SendResult:
        sender = AlertSender(
            store.create_sessionmaker(engine),
            OutboxSettings(),
            signing_secret="",
            callback_secret=SIGNING_SECRET,
            callback_allowed_hosts=allowed,
            # Trusts the test's certificate (and nothing else): the name must still match it.
            transport=httpx.AsyncHTTPTransport(verify=ssl.create_default_context(cafile=cert)),
        )
        try:
            return await sender.send(
                store.ClaimedDelivery(
                    id=1,
                    alert_id=None,
                    job_id="j-tls",
                    channel=CALLBACK,
                    target=target,
                    attempts=0,
                    body={"id": "j-tls", "state": "succeeded"},
                )
            )
        finally:
            await sender.aclose()

    try:
        while not server.started:
            await asyncio.sleep(0.01)
        by_name = await send(f"https://localhost:{port}/hook", ["localhost"])
        # The same server by its address: the certificate names no address, so TLS refuses it.
        by_address = await send(f"https://127.0.0.1:{port}/hook", ["127.0.0.1"])
    finally:
        server.should_exit = True
        await task
        await engine.dispose()
    assert by_name.status_code == 204, by_name.error
    assert seen[0]["host"] == f"localhost:{port}"
    assert seen[0]["webhook-id"] == "job_j-tls"
    assert by_address.status_code is None
    assert by_address.error is not None and "CERTIFICATE" in by_address.error.upper()
    assert len(seen) == 1
