"""What holds against a patient attacker, over real HTTP on loopback: the browser-security
headers on every page, wrong tokens held back per address (across `serve --workers 2`), IPv6
forms of loopback refused as callback targets, and the session cookie's `Secure` flag."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.mmap_dict import MmapedDict
from sqlalchemy import update

from service import store
from service.store import create_engine
from tests.cli_process import serving as serving_cli
from tests.cli_process import wait_ready
from tests.conftest import API_TOKEN
from tests.harness import signed_delivery
from tests.sink import SIGNING_SECRET
from tests.stack import running_stack

pytestmark = pytest.mark.e2e

LIMIT = 10  # AUTH_FAILURES_PER_MINUTE's default, which the tests run with
OTHER = "127.0.0.2"  # loopback too: a second client address without any proxy


def client(base: str, *, source: str = "127.0.0.1", **kwargs: object) -> httpx.AsyncClient:
    transport = httpx.AsyncHTTPTransport(local_address=source)
    return httpx.AsyncClient(base_url=base, transport=transport, timeout=30, **kwargs)  # type: ignore[arg-type]


async def log_in(http: httpx.AsyncClient, token: str, **headers: str) -> httpx.Response:
    return await http.post("/login", data={"token": token, "next": "/jobs"}, headers=headers)


async def test_every_page_sends_the_security_headers(clean_database: str) -> None:
    async with running_stack(clean_database) as stack, client(stack.service_url) as http:
        job = await stack.submit(path="/v1/customer")
        pages = ["/login", "/docs"]
        answers = [await http.get(page) for page in pages]
        assert (await log_in(http, API_TOKEN)).status_code == 303
        for page in ["/", "/jobs", f"/jobs/{job['id']}", "/inbox", "/status", "/alerts"]:
            pages.append(page)
            answers.append(await http.get(page))
        pages.append("/api/v1/jobs")
        answers.append(await stack.api.get("/api/v1/jobs"))
    for page, answer in zip(pages, answers, strict=True):
        assert answer.status_code == 200, (page, answer.status_code)
        policy = answer.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in policy, page
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy, page
        assert answer.headers["x-frame-options"] == "DENY", page
        assert answer.headers["x-content-type-options"] == "nosniff", page
        assert answer.headers["referrer-policy"] == "same-origin", page
        if "text/html" in answer.headers["content-type"]:
            assert "<script>" not in answer.text and " style=" not in answer.text, page


async def test_eleven_wrong_logins_are_held_back_while_another_address_logs_in(
    clean_database: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="service.web.throttle")
    async with (
        running_stack(clean_database) as stack,
        client(stack.service_url) as attacker,
        client(stack.service_url, source=OTHER) as operator,
    ):
        for attempt in range(LIMIT):
            answer = await log_in(attacker, f"guess-{attempt}")
            assert answer.status_code == 401, attempt
        held = await log_in(attacker, "guess-eleven")
        assert held.status_code == 429
        assert 0 < int(held.headers["retry-after"]) <= 60
        assert "Too many wrong tokens from this address" in held.text
        assert "<form" in held.text  # the login page itself, with its message
        # The right token from the held-back address waits too: no guessing through the 429s.
        assert (await log_in(attacker, API_TOKEN)).status_code == 429
        assert (await log_in(operator, API_TOKEN)).status_code == 303
        metrics = (await stack.api.get("/metrics")).text
        # The webhook path has its signature: never held back, even from this address.
        body, headers = signed_delivery()
        webhook = await attacker.post("/webhooks/visma", content=body, headers=headers)
        assert webhook.status_code == 200
        # Once the minute has passed (aged here in the database) the address may try again.
        engine = create_engine(clean_database)
        try:
            async with engine.begin() as conn:
                aged = store.AuthFailureWindow.started - 61
                await conn.execute(update(store.AuthFailureWindow).values(started=aged))
        finally:
            await engine.dispose()
        assert (await log_in(attacker, API_TOKEN)).status_code == 303
    assert 'visma_hooks_auth_held_back_total{reason="address"} 1.0' in metrics
    lines = [r.getMessage() for r in caplog.records if "held back" in r.getMessage()]
    assert len(lines) == 1 and "127.0.0.1" in lines[0]
    assert "guess" not in caplog.text and API_TOKEN not in caplog.text


async def test_wrong_bearer_tokens_are_held_back_per_address(clean_database: str) -> None:
    async with (
        running_stack(clean_database) as stack,
        client(stack.service_url) as attacker,
        client(stack.service_url, source=OTHER) as operator,
    ):
        for attempt in range(LIMIT):
            wrong = {"Authorization": f"Bearer guess-{attempt}"}
            assert (await attacker.get("/api/v1/jobs", headers=wrong)).status_code == 401
        right = {"Authorization": f"Bearer {API_TOKEN}"}
        held = await attacker.get("/api/v1/jobs", headers=right)
        assert held.status_code == 429
        assert held.json()["error"] == "too_many_requests"
        assert "AUTH_FAILURES_PER_MINUTE" in held.json()["detail"]
        assert 0 < int(held.headers["retry-after"]) <= 60
        assert (await operator.get("/api/v1/jobs", headers=right)).status_code == 200
        # Many bad webhook signatures from the held-back address are still judged as such.
        for _ in range(LIMIT + 1):
            body, headers = signed_delivery(secret="not-the-secret")
            answer = await attacker.post("/webhooks/visma", content=body, headers=headers)
            assert answer.status_code == 401


async def test_an_address_whose_token_was_right_is_still_held_back_when_it_guesses(
    clean_database: str,
) -> None:
    """A right token spares the next reads of the count (for a few seconds); a wrong one from
    that address ends that, so a client that had access cannot guess past the limit."""
    async with running_stack(clean_database) as stack, client(stack.service_url) as http:
        right = {"Authorization": f"Bearer {API_TOKEN}"}
        assert (await http.get("/api/v1/jobs", headers=right)).status_code == 200
        for attempt in range(LIMIT):
            wrong = {"Authorization": f"Bearer guess-{attempt}"}
            assert (await http.get("/api/v1/jobs", headers=wrong)).status_code == 401
        assert (await http.get("/api/v1/jobs", headers=right)).status_code == 429
        assert (
            await http.get("/api/v1/jobs", headers={"Authorization": "Bearer x"})
        ).status_code == 429


async def test_forwarded_addresses_count_only_from_a_trusted_proxy(clean_database: str) -> None:
    async with (
        running_stack(clean_database, TRUSTED_PROXIES=["127.0.0.1/32"]) as stack,
        client(stack.service_url) as proxy,
        client(stack.service_url, source=OTHER) as untrusted,
    ):
        for attempt in range(LIMIT):
            answer = await log_in(proxy, f"guess-{attempt}", **{"X-Forwarded-For": "203.0.113.9"})
            assert answer.status_code == 401
        assert (await log_in(proxy, "x", **{"X-Forwarded-For": "203.0.113.9"})).status_code == 429
        # Another client behind the same proxy logs in.
        behind = await log_in(proxy, API_TOKEN, **{"X-Forwarded-For": "198.51.100.4"})
        assert behind.status_code == 303
        # A peer that is no proxy of ours cannot spread its guesses over made-up addresses.
        for attempt in range(LIMIT):
            forged = {"X-Forwarded-For": f"192.0.2.{attempt}"}
            assert (await log_in(untrusted, "guess", **forged)).status_code == 401
        assert (
            await log_in(untrusted, "guess", **{"X-Forwarded-For": "192.0.2.99"})
        ).status_code == 429


def _per_worker(directory: Path) -> dict[str, dict[str, float]]:
    """Each worker's own count of refused tokens by result, read from its metrics file."""
    counts: dict[str, dict[str, float]] = {}
    for path in directory.glob("counter_*.db"):
        for key, count, _timestamp, _pos in MmapedDict.read_all_values_from_file(str(path)):
            if "visma_hooks_auth_refused_total" in key:
                labels = next(part for part in json.loads(key) if isinstance(part, dict))
                result = labels["result"]
                mine = counts.setdefault(path.stem, {"held_back": 0, "wrong_token": 0})
                mine[result] += count
    return counts


def test_wrong_tokens_are_counted_across_the_workers_of_serve(
    clean_database: str, tmp_path: Path
) -> None:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    settings = {
        "DATABASE_URL": clean_database,
        "API_TOKENS": API_TOKEN,
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "LOG_FORMAT": "json",
    }
    with serving_cli(
        "--workers", "2", cwd=tmp_path, log=tmp_path / "serve.log", **settings
    ) as server:
        wait_ready(server)
        wrong = {"Authorization": "Bearer guess"}
        for attempt in range(LIMIT):
            with httpx.Client() as fresh:  # a new connection: either worker may take it
                answer = fresh.get(f"{server.url}/api/v1/jobs", headers=wrong)
            assert answer.status_code == 401, attempt
        deadline = time.monotonic() + 30
        # Fresh connections until both workers have held the address back: each answers 429
        # though it saw only some of the failures (or none).
        while len([w for w in _per_worker(metrics_dir).values() if w["held_back"]]) < 2:
            assert time.monotonic() < deadline, _per_worker(metrics_dir)
            with httpx.Client() as fresh:
                answer = fresh.get(f"{server.url}/api/v1/jobs", headers=wrong)
            assert answer.status_code == 429
        workers = _per_worker(metrics_dir)
        assert sum(w["wrong_token"] for w in workers.values()) == LIMIT
    assert "Traceback" not in server.stderr()


@pytest.mark.parametrize("url", ["https://[64:ff9b::7f00:1]/hook", "https://[2002:7f00:1::]/hook"])
async def test_callback_urls_that_embed_loopback_in_ipv6_are_refused(
    clean_database: str, url: str
) -> None:
    async with running_stack(clean_database, CALLBACK_SIGNING_SECRET=SIGNING_SECRET) as stack:
        answer = await stack.api.post(
            "/api/v1/jobs", json={"method": "POST", "path": "/v1/customer", "callbackUrl": url}
        )
        assert answer.status_code == 400, answer.text
        assert "not a public address" in answer.json()["detail"]
        # The same forms of a public address are fine.
        public = url.replace("7f00:1", "808:808")
        accepted = await stack.api.post(
            "/api/v1/jobs", json={"method": "POST", "path": "/v1/customer", "callbackUrl": public}
        )
        assert accepted.status_code in (200, 201, 202), accepted.text


@pytest.mark.parametrize(
    ("overrides", "headers", "secure"),
    [
        ({"TRUSTED_PROXIES": ["127.0.0.1/32"]}, {"X-Forwarded-Proto": "https"}, True),
        ({"TRUSTED_PROXIES": ["127.0.0.1/32"]}, {"X-Forwarded-Proto": "http"}, False),
        ({"TRUSTED_PROXIES": ["10.0.0.0/8"]}, {"X-Forwarded-Proto": "https"}, False),
        ({}, {"X-Forwarded-Proto": "https"}, False),
        ({"SESSION_COOKIE_SECURE": True}, {}, True),
    ],
)
async def test_session_cookie_is_secure_when_a_trusted_proxy_says_https(
    clean_database: str, overrides: dict[str, object], headers: dict[str, str], secure: bool
) -> None:
    async with (
        running_stack(clean_database, **overrides) as stack,
        client(stack.service_url) as http,
    ):
        answer = await log_in(http, API_TOKEN, **headers)
    assert answer.status_code == 303
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith("vh_session=")
    assert ("; secure" in cookie.lower()) is secure, cookie
