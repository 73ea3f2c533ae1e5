"""The dashboard in headless Chromium against the real service and the Visma simulator:
log in, filter, open a failed job and see its fault and hint, watch a list refresh."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from service.domain.visma_errors import HINT_NO_LICENSE
from service.simulator import Outcome
from tests.browser import chromium, csp_violations, keep_as_doc, screenshot
from tests.conftest import API_TOKEN
from tests.stack import running_stack

pytestmark = pytest.mark.e2e

DOC_SCREENSHOT = Path(__file__).parent.parent / "docs" / "dashboard.png"
READ_TOKEN = "browser-read-token"
WAIT_SECONDS = 15


def wait_for(driver, condition, message: str):
    return WebDriverWait(driver, WAIT_SECONDS).until(lambda d: condition(d), message)


def log_in(driver, base: str, token: str, *, start: str = "/jobs") -> None:
    driver.get(base + start)
    wait_for(driver, lambda d: d.find_elements(By.NAME, "token"), "no login form")
    driver.find_element(By.NAME, "token").send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "form[action='/login'] button").click()
    wait_for(driver, lambda d: d.current_url.startswith(base + start), "no way back after login")


async def test_browser_log_in_filter_and_open_a_failed_job(clean_database: str) -> None:
    async with running_stack(clean_database, API_READ_TOKENS=[READ_TOKEN]) as stack:
        stack.simulator.script(Outcome(kind="no_license", path="salesorder"))
        failed = await stack.submit(path="/v1/salesorder", tags={"orderRef": "SO-1042"})
        done = await stack.submit(path="/v1/customer", tags={"orderRef": "SO-1043"})
        for job in (failed, done):
            await stack.wait_for_end(job["id"])

        def drive() -> None:
            driver = chromium()
            try:
                base = stack.service_url
                log_in(driver, base, API_TOKEN)
                rows = driver.find_elements(By.CSS_SELECTOR, "tr.job")
                assert len(rows) == 2
                Select(driver.find_element(By.NAME, "state")).select_by_value("failed")
                driver.find_element(By.CSS_SELECTOR, "#job-filters button").click()
                wait_for(driver, lambda d: "state=failed" in d.current_url, "filter not applied")
                rows = driver.find_elements(By.CSS_SELECTOR, "tr.job")
                assert [r.get_attribute("data-state") for r in rows] == ["failed"]
                assert failed["id"] in rows[0].text  # the id in full
                screenshot(driver, "jobs-failed")
                rows[0].find_element(By.CSS_SELECTOR, "a.job-link").click()
                fault = wait_for(
                    driver, lambda d: d.find_elements(By.ID, "fault"), "no fault shown"
                )[0]
                assert "Fault 12027" in fault.text
                assert "No license for this company." in fault.text
                assert HINT_NO_LICENSE in driver.find_element(By.ID, "hint").text
                keep_as_doc(screenshot(driver, "job-failed"), DOC_SCREENSHOT)
                assert csp_violations(driver) == []
            finally:
                driver.quit()

        await asyncio.to_thread(drive)


async def test_browser_job_list_refreshes_without_a_reload(clean_database: str) -> None:
    async with running_stack(clean_database) as stack:
        first = await stack.submit(path="/v1/customer")
        await stack.wait_for_end(first["id"])
        loop = asyncio.get_running_loop()

        def drive() -> None:
            driver = chromium()
            try:
                log_in(driver, stack.service_url, API_TOKEN)
                driver.execute_script("window.notReloaded = true")
                assert len(driver.find_elements(By.CSS_SELECTOR, "tr.job")) == 1
                later = asyncio.run_coroutine_threadsafe(
                    stack.submit(path="/v1/customer", tags={"late": "yes"}), loop
                ).result(timeout=10)
                deadline = time.monotonic() + WAIT_SECONDS
                while later["id"] not in driver.find_element(By.ID, "jobs").text:
                    assert time.monotonic() < deadline, "the list never refreshed"
                    time.sleep(0.2)
                assert driver.execute_script("return window.notReloaded") is True
                screenshot(driver, "jobs-refreshed")
                assert csp_violations(driver) == []
            finally:
                driver.quit()

        await asyncio.to_thread(drive)


async def test_browser_replays_a_delivery_from_the_inbox(clean_database: str) -> None:
    async with running_stack(clean_database) as stack:
        job = await stack.submit(path="/v1/customer", tags={"orderRef": "SO-7"})
        await stack.wait_for_end(job["id"])
        (delivery,) = await stack.inbox(kind="visma")

        def drive() -> None:
            driver = chromium()
            try:
                log_in(driver, stack.service_url, API_TOKEN, start="/inbox")
                form = driver.find_element(
                    By.CSS_SELECTOR, f"form[action='/inbox/{delivery['id']}/replay']"
                )
                form.find_element(By.TAG_NAME, "button").click()
                note = wait_for(
                    driver, lambda d: d.find_elements(By.CSS_SELECTOR, "p.note"), "no answer"
                )[0]
                assert f"Replayed delivery {delivery['id']} for job {job['id']}" in note.text
                screenshot(driver, "inbox-replayed")
                assert csp_violations(driver) == []
            finally:
                driver.quit()

        await asyncio.to_thread(drive)
        replayed = await stack.wait_for_event(job["id"], "replayed")
        assert replayed["state"] == "succeeded"  # a settled job stays settled


async def test_browser_shows_the_api_docs_and_refuses_inline_script(clean_database: str) -> None:
    """`/docs` renders its routes under the strict policy, which an injected inline script
    breaks: the console check sees a violation when there is one."""
    async with running_stack(clean_database) as stack:

        def drive() -> None:
            driver = chromium()
            try:
                driver.get(stack.service_url + "/docs")
                wait_for(
                    driver, lambda d: "/api/v1/jobs" in d.find_element(By.ID, "doc").text, "no docs"
                )
                assert csp_violations(driver) == []
                driver.execute_script(
                    "const s = document.createElement('script');"
                    "s.textContent = 'window.injected = true';"
                    "document.body.appendChild(s);"
                )
                assert driver.execute_script("return window.injected") is None
                assert csp_violations(driver), "an inline script ran unreported"
            finally:
                driver.quit()

        await asyncio.to_thread(drive)
