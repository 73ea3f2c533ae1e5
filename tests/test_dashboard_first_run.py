"""What a newcomer tripped on in the dashboard and /docs, over real HTTP against the real
service and the Visma simulator: the favicon, the nav's /docs link, Visma's error read once on
a job page with its timeline as rows, the inbox agreeing with the API's `problem`, and /docs
showing a request body's fields (rendered in headless Chromium)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from service.simulator import Outcome
from tests.browser import chromium
from tests.conftest import API_TOKEN
from tests.harness import signed_delivery
from tests.stack import Stack, running_stack

pytestmark = pytest.mark.e2e

WAIT_SECONDS = 15
NO_LICENSE = "No license for this company."


def without_folded(html: str) -> str:
    """The page as read before opening anything: `<details>` blocks left out."""
    return re.sub(r"<details.*?</details>", "", html, flags=re.S)


@contextlib.asynccontextmanager
async def logged_in(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    """A client like a browser, logged in to the dashboard."""
    async with httpx.AsyncClient(base_url=stack.service_url, timeout=30) as client:
        answer = await client.post("/login", data={"token": API_TOKEN, "next": "/jobs"})
        assert answer.status_code == 303
        yield client


async def test_favicon_is_served_and_the_nav_links_the_docs(clean_database: str) -> None:
    async with running_stack(clean_database) as stack:
        async with httpx.AsyncClient(base_url=stack.service_url) as anonymous:
            icon = await anonymous.get("/favicon.ico")
        assert icon.status_code == 200
        assert icon.headers["content-type"].startswith("image/")
        assert icon.content.lstrip().startswith(b"<svg")
        async with logged_in(stack) as client:
            jobs = await client.get("/jobs")
        assert '<a href="/docs">' in jobs.text
        assert '<link rel="icon" href="/favicon.ico"' in jobs.text


async def test_a_failed_job_shows_visma_error_once_and_its_timeline_as_rows(
    clean_database: str,
) -> None:
    async with running_stack(clean_database) as stack:
        stack.simulator.script(Outcome(kind="no_license", path="salesorder"))
        job = await stack.submit(path="/v1/salesorder")
        ended = await stack.wait_for_end(job["id"])
        assert ended["error"]["message"] == NO_LICENSE
        async with logged_in(stack) as client:
            page = (await client.get(f"/jobs/{job['id']}")).text
        shown = without_folded(page)
        assert shown.count(NO_LICENSE) == 1  # the Error section; the raw answer is folded
        assert NO_LICENSE in page  # and still there, in Visma's answer as sent
        kinds = re.findall(r'<tr class="event" data-kind="([a-z_.]+)">', page)
        assert kinds == [e["kind"] for e in ended["events"]]
        assert "<pre>" not in shown.split("<h2>Timeline</h2>")[1]  # no raw JSON block unfolded
        assert f"vismaJobId</span> {ended['vismaJobId']}" in page


async def test_the_inbox_flags_what_the_api_calls_a_problem_and_nothing_else(
    clean_database: str,
) -> None:
    async with running_stack(clean_database) as stack:
        job = await stack.submit(path="/v1/customer")
        await stack.wait_for_end(job["id"])
        async with httpx.AsyncClient(base_url=stack.service_url) as dispatcher:
            # One naming a job the service never made: unlinked, but no problem.
            body, headers = signed_delivery(job_id=str(uuid.uuid4()))
            assert (
                await dispatcher.post("/webhooks/visma", content=body, headers=headers)
            ).is_success
            # One whose body is no JSON: a problem.
            body, headers = signed_delivery(b"[[[")
            assert (
                await dispatcher.post("/webhooks/visma", content=body, headers=headers)
            ).is_success
        deliveries = await stack.inbox()
        with_problem = {d["id"] for d in deliveries if d["problem"]}
        assert len(with_problem) == 1 and len(deliveries) == 3
        assert any(not d["matched"] and d["problem"] is None for d in deliveries)
        async with logged_in(stack) as client:
            page = (await client.get("/inbox")).text
        assert "unmatched" not in page.lower()
        rows = re.findall(
            r'<tr class="delivery ([a-z]*)">\s*<td><code class="id" title="([^"]+)"', page
        )
        assert {delivery_id for cls, delivery_id in rows if cls == "flagged"} == with_problem
        assert {delivery_id for _, delivery_id in rows} == {d["id"] for d in deliveries}
        problem = next(d["problem"] for d in deliveries if d["problem"])
        assert page.count(f'<span class="problem">{problem}</span>') == 1


async def test_docs_show_a_request_body_fields_and_code_spans(clean_database: str) -> None:
    async with running_stack(clean_database) as stack:

        def drive() -> None:
            driver = chromium()
            try:
                driver.get(stack.service_url + "/docs")
                WebDriverWait(driver, WAIT_SECONDS).until(
                    lambda d: d.find_elements(By.CSS_SELECTOR, ".op.post table.fields"),
                    "the request body was not rendered",
                )
                create = driver.find_elements(By.CSS_SELECTOR, ".op.post")[0]
                fields = [
                    c.text
                    for c in create.find_elements(By.CSS_SELECTOR, "table.fields td:first-child")
                ]
                assert {"method", "path", "body", "tags"} <= set(fields)
                assert "$ref" not in driver.find_element(By.ID, "doc").text
                listing = driver.find_elements(By.CSS_SELECTOR, ".op.get")[0]
                paragraphs = [p.text for p in listing.find_elements(By.CSS_SELECTOR, ":scope > p")]
                assert paragraphs[:2] == [
                    "List jobs, newest first",
                    "Tags filter as tag.<key>=<value> (any number of them).",
                ]
                codes = [c.text for c in listing.find_elements(By.CSS_SELECTOR, ":scope > p code")]
                assert codes == ["tag.<key>=<value>"]
                assert "`" not in driver.find_element(By.ID, "doc").text
            finally:
                driver.quit()

        await asyncio.to_thread(drive)
