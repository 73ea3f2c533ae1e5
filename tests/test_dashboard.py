"""The dashboard at `/` over HTTP: login, pages, escaping, read-only tokens, CSRF."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest

from service.web.dashboard import CSRF_REFUSED, LOGIN_REFUSED, READ_ONLY
from tests.conftest import API_TOKEN
from tests.factories import insert_job
from tests.harness import Harness, in_process, signed_delivery

READ_TOKEN = "test-read-token"
FAULT_HINT = "The integration user lacks the API user role"


@pytest.fixture(name="harness")
async def fixture_harness(clean_database: str):
    async with in_process(clean_database, API_READ_TOKENS=[READ_TOKEN]) as harness:
        yield harness


def browser(harness: Harness) -> httpx.AsyncClient:
    """A client like a browser: no bearer header, cookies kept."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=harness.app), base_url="http://testserver"
    )


async def log_in(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post("/login", data={"token": token, "next": "/jobs"})


async def failed_job(harness: Harness, **fields) -> str:
    return await insert_job(
        harness.resources.sessions,
        state="failed",
        visma_job_id=str(uuid.uuid4()),
        error={"message": "No license for this company.", "faultCode": "12027"},
        hint=FAULT_HINT,
        **fields,
    )


async def test_dashboard_asks_for_a_login_first(harness: Harness) -> None:
    async with browser(harness) as client:
        answer = await client.get("/jobs?state=failed")
        assert answer.status_code == 303
        assert answer.headers["location"] == "/login?next=%2Fjobs%3Fstate%3Dfailed"
        form = await client.get("/login")
        assert 'name="token"' in form.text
        refused = await log_in(client, "wrong")
        assert refused.status_code == 401
        assert LOGIN_REFUSED in refused.text
        assert "vh_session" not in client.cookies


async def test_log_in_sets_a_http_only_same_site_cookie(harness: Harness) -> None:
    async with browser(harness) as client:
        answer = await log_in(client, API_TOKEN)
        assert answer.status_code == 303
        assert answer.headers["location"] == "/jobs"
        cookie = answer.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie
        assert API_TOKEN not in cookie
        assert (await client.get("/jobs")).status_code == 200


async def test_open_redirects_are_refused(harness: Harness) -> None:
    async with browser(harness) as client:
        answer = await client.post("/login", data={"token": API_TOKEN, "next": "//evil.example/x"})
        assert answer.headers["location"] == "/"


async def test_jobs_filter_and_a_failed_job_shows_fault_and_hint(harness: Harness) -> None:
    failed = await failed_job(harness, tags={"orderRef": "SO-1"})
    other = await insert_job(harness.resources.sessions, state="accepted")
    async with browser(harness) as client:
        await log_in(client, API_TOKEN)
        listed = (await client.get("/jobs", params={"state": "failed"})).text
        assert failed in listed and other not in listed
        by_tag = (await client.get("/jobs", params={"tag": "orderRef=SO-1"})).text
        assert failed in by_tag and other not in by_tag
        by_id = (await client.get("/jobs", params={"q": other})).text
        assert other in by_id and failed not in by_id
        partial = (await client.get("/jobs", params={"state": "failed", "partial": "1"})).text
        assert failed in partial and "<html" not in partial
        page = (await client.get(f"/jobs/{failed}")).text
        assert "Fault 12027" in page and "No license for this company." in page
        assert FAULT_HINT in page
        assert (await client.get(f"/jobs/{uuid.uuid4()}")).status_code == 404


async def test_outside_text_is_escaped(harness: Harness) -> None:
    job_id = await failed_job(
        harness,
        path="/v1/customer/<script>alert(1)</script>",
        tags={"x": '"><img src=x onerror=alert(2)>'},
    )
    async with browser(harness) as client:
        await log_in(client, API_TOKEN)
        for url in ("/jobs", f"/jobs/{job_id}"):
            page = (await client.get(url)).text
            assert "<script>alert(1)" not in page
            assert "<img src=x" not in page
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


async def test_a_read_only_token_sees_everything_and_changes_nothing(harness: Harness) -> None:
    body, headers = signed_delivery()
    assert (
        await harness.client.post("/webhooks/visma", content=body, headers=headers)
    ).status_code == 200
    async with browser(harness) as client:
        await log_in(client, READ_TOKEN)
        inbox = await client.get("/inbox")
        assert inbox.status_code == 200
        delivery_id = re.search(r'data-copy="([0-9a-f-]{36})"', inbox.text).group(1)
        assert "Replay</button>" not in inbox.text
        for page in ("/", "/jobs", "/status", "/alerts"):
            assert (await client.get(page)).status_code == 200
        csrf = page_csrf(inbox.text)
        refused = await client.post(f"/inbox/{delivery_id}/replay", data={"csrf": csrf})
        assert refused.status_code == 403
        assert READ_ONLY in refused.text


def page_csrf(page: str) -> str:
    """The session's CSRF token, as every page's logout form carries it (a read-only page
    shows no replay form with it)."""
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found is not None
    return found.group(1)


async def test_replay_needs_the_csrf_token(harness: Harness) -> None:
    body, headers = signed_delivery()
    assert (
        await harness.client.post("/webhooks/visma", content=body, headers=headers)
    ).status_code == 200
    async with browser(harness) as client:
        await log_in(client, API_TOKEN)
        inbox = (await client.get("/inbox")).text
        assert "Replay</button>" in inbox
        delivery_id = re.search(r'action="/inbox/([0-9a-f-]{36})/replay"', inbox).group(1)
        forged = await client.post(f"/inbox/{delivery_id}/replay", data={"csrf": "guess"})
        assert forged.status_code == 403
        assert CSRF_REFUSED in forged.text


async def test_health_panel_counts(harness: Harness) -> None:
    await insert_job(harness.resources.sessions, state="accepted")
    body, headers = signed_delivery()
    assert (
        await harness.client.post("/webhooks/visma", content=body, headers=headers)
    ).status_code == 200
    async with browser(harness) as client:
        await log_in(client, API_TOKEN)
        page = (await client.get("/?partial=1")).text
    assert "arriving" in page
    assert 'id="panel-backlog"' in page and 'id="panel-outbox"' in page
    assert 'id="panel-signatures"' in page and 'id="panel-budget"' in page


async def test_a_job_shows_its_kept_result(harness: Harness) -> None:
    from datetime import UTC, datetime

    from service import store

    job_id = await insert_job(harness.resources.sessions, state="succeeded")
    async with harness.resources.sessions.begin() as session:
        await store.keep_result(
            session,
            job_id,
            status=201,
            headers={"Location": "https://api.example/v1/customer/10042"},
            content_type="application/json",
            content=b'{"number": "10042", "note": "<b>bold</b>"}',
            size=42,
            truncated=False,
            at=datetime.now(UTC),
        )
    async with browser(harness) as client:
        await log_in(client, READ_TOKEN)
        page = (await client.get(f"/jobs/{job_id}")).text
    assert 'id="result"' in page and "HTTP 201" in page
    assert "10042" in page and "&lt;b&gt;bold&lt;/b&gt;" in page


async def test_jobs_filter_by_company_and_each_company_has_a_budget(clean_database: str) -> None:
    async with in_process(
        clean_database, VISMA_TENANT_ID="tenant-a,tenant-b", API_READ_TOKENS=[READ_TOKEN]
    ) as harness:
        a_job = await insert_job(harness.resources.sessions, tenant="tenant-a")
        b_job = await insert_job(harness.resources.sessions, tenant="tenant-b")
        old_job = await insert_job(harness.resources.sessions)  # before jobs named a company
        async with browser(harness) as client:
            await log_in(client, READ_TOKEN)
            page = (await client.get("/jobs")).text
            assert '<option value="tenant-b"' in page
            only_b = (await client.get("/jobs", params={"company": "tenant-b"})).text
            assert b_job in only_b and a_job not in only_b and old_job not in only_b
            default = (await client.get("/jobs", params={"company": "tenant-a"})).text
            assert a_job in default and old_job in default and b_job not in default
            health = (await client.get("/", params={"partial": "1"})).text
    budgets = health.split('id="panel-budget"', 1)[1].split("</section>", 1)[0]
    assert "tenant-a" in budgets and "tenant-b" in budgets
    assert "Visma has not told its budget yet" in budgets
