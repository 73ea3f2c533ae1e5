"""The dashboard's issues over HTTP: the list and its filter, an issue with its jobs, the
moves and the resend behind the page's CSRF token and a write token, escaping, and 404s."""

from __future__ import annotations

import re

import httpx
import pytest
from sqlalchemy import update

from service import store
from service.store import create_engine, create_sessionmaker
from service.web.dashboard import CSRF_REFUSED, PAGE_SIZE
from service.web.dashboard_issues import WRITE_NEEDED
from tests.conftest import API_TOKEN
from tests.factories import failed_issue
from tests.harness import Harness, in_process
from tests.test_dashboard import READ_TOKEN, browser, log_in, page_csrf


@pytest.fixture(name="harness")
async def fixture_harness(clean_database: str):
    async with in_process(clean_database, API_READ_TOKENS=[READ_TOKEN]) as harness:
        yield harness


async def set_issue(database_url: str, issue_id: str, **values) -> None:
    engine = create_engine(database_url)
    try:
        async with create_sessionmaker(engine).begin() as session:
            await session.execute(
                update(store.Issue).where(store.Issue.id == issue_id).values(**values)
            )
    finally:
        await engine.dispose()


def issue_rows(page: str) -> list[str]:
    return re.findall(r'<tr class="issue" data-state="([a-z]+)" data-id="([^"]+)"', page)


async def test_issues_list_shows_open_ones_and_filters_by_state(
    harness: Harness, clean_database: str
) -> None:
    open_id = await failed_issue(clean_database, 3)
    resolved_id = await failed_issue(clean_database, 2, fault_code="10001")
    await set_issue(clean_database, resolved_id, state="resolved", hint="Renew the licence")
    async with browser(harness) as client:
        await log_in(client, API_TOKEN)
        page = (await client.get("/issues")).text
        assert issue_rows(page) == [("open", open_id)]
        assert "fault 12027" in page and "POST /v1/salesorder" in page
        assert '<td class="count">3</td>' in page
        resolved = (await client.get("/issues?state=resolved")).text
        assert issue_rows(resolved) == [("resolved", resolved_id)]
        assert "Renew the licence" in resolved
        every = (await client.get("/issues?state=any")).text
        assert {i for _, i in issue_rows(every)} == {open_id, resolved_id}
        unknown = await client.get("/issues?state=<b>x</b>")
        assert unknown.status_code == 200
        assert "Unknown state" in unknown.text and "<b>x</b>" not in unknown.text
        partial = (await client.get("/issues?partial=1")).text
        assert "<html" not in partial and open_id in partial
        assert 'href="/issues"' in page  # linked from the nav


async def test_an_issue_shows_its_jobs_paged_and_the_moves_its_state_allows(
    harness: Harness, clean_database: str
) -> None:
    issue_id = await failed_issue(clean_database, PAGE_SIZE + 5)
    async with browser(harness) as client:
        await log_in(client, API_TOKEN)
        page = (await client.get(f"/issues/{issue_id}")).text
        assert len(re.findall(r'<tr class="job"', page)) == PAGE_SIZE
        assert "page 1 of 2" in page
        second = (await client.get(f"/issues/{issue_id}?page=2")).text
        assert len(re.findall(r'<tr class="job"', second)) == 5
        job_id = re.search(r'href="/jobs/([0-9a-f-]{36})"', second).group(1)
        assert (await client.get(f"/jobs/{job_id}")).status_code == 200
        actions = re.findall(rf'action="/issues/{issue_id}/([a-z]+)"', page)
        assert actions == ["acknowledge", "resolve", "ignore"]
        csrf = page_csrf(page)
        moved = await client.post(f"/issues/{issue_id}/acknowledge", data={"csrf": csrf})
        assert moved.status_code == 303
        page = (await client.get(moved.headers["location"])).text
        assert "Acknowledged." in page and "state-acknowledged" in page
        assert re.findall(rf'action="/issues/{issue_id}/([a-z]+)"', page) == ["resolve", "ignore"]
        await client.post(f"/issues/{issue_id}/resolve", data={"csrf": csrf})
        page = (await client.get(f"/issues/{issue_id}")).text
        assert re.findall(rf'action="/issues/{issue_id}/([a-z]+)"', page) == ["ignore"]
        wrong = await client.post(f"/issues/{issue_id}/acknowledge", data={"csrf": csrf})
        assert wrong.status_code == 409
        assert "cannot be acknowledged" in wrong.text


async def test_resend_counts_first_then_starts_an_operation(
    harness: Harness, clean_database: str
) -> None:
    issue_id = await failed_issue(clean_database, 4)
    async with browser(harness) as client:
        await log_in(client, API_TOKEN)
        confirm = (await client.get(f"/issues/{issue_id}/resend")).text
        assert "4 jobs will be resent" in confirm
        started = await client.post(f"/issues/{issue_id}/resend", data={"csrf": page_csrf(confirm)})
        assert started.status_code == 303
        operation_url = started.headers["location"]
        assert re.fullmatch(r"/operations/[0-9a-f-]{36}", operation_url)
        page = (await client.get(operation_url)).text
        assert "0 of 4 done" in page
        assert f'data-refresh="{operation_url}?partial=1"' in page
        assert f'href="/issues/{issue_id}"' in page
        answer = await harness.client.get(f"/api/v1{operation_url}")
        assert answer.json()["total"] == 4
        assert (await client.get("/operations/nope")).status_code == 404


async def test_forms_need_the_csrf_token_and_a_write_token(
    harness: Harness, clean_database: str
) -> None:
    issue_id = await failed_issue(clean_database, 2)
    async with browser(harness) as client:
        await log_in(client, API_TOKEN)
        for action in ("acknowledge", "resolve", "ignore", "resend"):
            forged = await client.post(f"/issues/{issue_id}/{action}", data={"csrf": "guess"})
            assert forged.status_code == 403
            assert CSRF_REFUSED in forged.text
    async with browser(harness) as client:
        await log_in(client, READ_TOKEN)
        page = await client.get(f"/issues/{issue_id}")
        assert page.status_code == 200
        assert 'type="submit"' not in page.text.split("</header>", 1)[1]
        assert "Resend" not in page.text and "/acknowledge" not in page.text
        csrf = page_csrf(page.text)
        for action in ("acknowledge", "resend"):
            refused = await client.post(f"/issues/{issue_id}/{action}", data={"csrf": csrf})
            assert refused.status_code == 403
            assert WRITE_NEEDED.split(":")[0] in refused.text
        assert (await client.get(f"/issues/{issue_id}/resend")).status_code == 403
    answer = await harness.client.get(f"/api/v1/issues/{issue_id}")
    assert answer.json()["state"] == "open"
    operations = await harness.client.post(
        f"/api/v1/issues/{issue_id}/resend", json={"dryRun": True}
    )
    assert operations.json()["count"] == 2  # nothing was resent


async def test_bad_ids_are_404_and_outside_text_is_escaped(
    harness: Harness, clean_database: str
) -> None:
    issue_id = await failed_issue(clean_database, 1)
    await set_issue(
        clean_database,
        issue_id,
        message="<script>alert(1)</script>",
        hint='"><img src=x onerror=alert(2)>',
        path_template="/v1/<b>x</b>",
    )
    async with browser(harness) as client:
        await log_in(client, API_TOKEN)
        for url in ("/issues", f"/issues/{issue_id}"):
            page = (await client.get(url)).text
            assert "<script>alert(1)" not in page and "<img src=x" not in page
            assert "<b>x</b>" not in page
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        for url in ("/issues/nope", "/issues/b64(!!)", "/issues/nope/resend", "/issues/%00"):
            missing = await client.get(url)
            assert missing.status_code == 404, url
            assert "Not found" in missing.text
        csrf = page_csrf((await client.get("/issues")).text)
        gone = await client.post("/issues/nope/acknowledge", data={"csrf": csrf})
        assert gone.status_code == 404
        gone = await client.post("/issues/nope/resend", data={"csrf": csrf})
        assert gone.status_code == 404
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=harness.app), base_url="http://testserver"
    ) as anonymous:
        assert (await anonymous.get("/issues")).status_code == 303
        posted = await anonymous.post(f"/issues/{issue_id}/resolve", data={"csrf": "x"})
        assert posted.status_code == 303
    answer = await harness.client.get(f"/api/v1/issues/{issue_id}")
    assert answer.json()["state"] == "open"
