"""The dashboard's issues in headless Chromium against the real service and the Visma
simulator: jobs fail, their issue is listed; open it, resend (the dry-run count first), follow
the operation to done; acknowledge, then resolve, with clicks."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from selenium.webdriver.common.by import By
from sqlalchemy import insert, update

from service import store
from service.simulator import Outcome
from service.store import create_engine, create_sessionmaker
from tests.browser import chromium, csp_violations, screenshot
from tests.conftest import API_TOKEN
from tests.stack import running_stack
from tests.test_dashboard_browser import WAIT_SECONDS, log_in, wait_for

pytestmark = pytest.mark.e2e

FAILING = 3


def text_of(driver, element_id: str) -> str:
    found = driver.find_elements(By.ID, element_id)
    return found[0].text if found else ""


def click_move(driver, action: str) -> None:
    driver.find_element(By.CSS_SELECTOR, f"form.move button[value='{action}']").click()


async def test_browser_resends_an_issue_and_moves_it(clean_database: str) -> None:
    async with running_stack(clean_database) as stack:
        stack.simulator.script(Outcome(kind="no_license", times=FAILING))
        jobs = await asyncio.gather(*(stack.submit(path="/v1/salesorder") for _ in range(FAILING)))
        ended = await asyncio.gather(*(stack.wait_for_end(j["id"]) for j in jobs))
        assert {j["state"] for j in ended} == {"failed"}

        def drive() -> str:
            driver = chromium()
            try:
                base = stack.service_url
                log_in(driver, base, API_TOKEN, start="/issues")
                rows = driver.find_elements(By.CSS_SELECTOR, "tr.issue")
                assert len(rows) == 1
                assert "fault 12027" in rows[0].text and str(FAILING) in rows[0].text
                screenshot(driver, "issues")
                rows[0].find_element(By.CSS_SELECTOR, "a.issue-link").click()
                wait_for(driver, lambda d: d.find_elements(By.ID, "actions"), "no issue page")
                issue_url = driver.current_url
                assert text_of(driver, "job-count") == str(FAILING)
                assert len(driver.find_elements(By.CSS_SELECTOR, "tr.job")) == FAILING

                driver.find_element(By.ID, "resend").click()
                count = wait_for(
                    driver, lambda d: d.find_elements(By.ID, "resend-count"), "no dry run"
                )[0]
                assert f"{FAILING} jobs will be resent" in count.text
                driver.find_element(By.ID, "confirm-resend").click()
                wait_for(driver, lambda d: "/operations/" in d.current_url, "no operation page")
                wait_for(
                    driver,
                    lambda d: text_of(d, "operation-state") == "done",
                    "the operation never showed done",
                )
                assert f"{FAILING} of {FAILING} done" in text_of(driver, "operation-progress")
                screenshot(driver, "operation-done")

                driver.get(issue_url)
                click_move(driver, "acknowledge")
                wait_for(driver, lambda d: "Acknowledged." in d.page_source, "not acknowledged")
                assert driver.find_elements(By.CSS_SELECTOR, "h1 .state-acknowledged")
                assert not driver.find_elements(By.CSS_SELECTOR, "button[value='acknowledge']")
                click_move(driver, "resolve")
                wait_for(driver, lambda d: "Resolved." in d.page_source, "not resolved")
                assert driver.find_elements(By.CSS_SELECTOR, "h1 .state-resolved")
                screenshot(driver, "issue-resolved")
                assert csp_violations(driver) == []
                return issue_url.rsplit("/", 1)[1]
            finally:
                driver.quit()

        issue_id = await asyncio.to_thread(drive)
        issue = (await stack.api.get(f"/api/v1/issues/{issue_id}")).json()
        assert issue["state"] == "resolved"
        # The resent jobs were made and succeed (the simulator fails no more).
        resent = (await stack.api.get("/api/v1/jobs", params={"pageSize": "50"})).json()
        assert len(resent["items"]) == 2 * FAILING
        new = [j for j in resent["items"] if j["id"] not in {x["id"] for x in jobs}]
        for job in new:
            assert (await stack.wait_for_end(job["id"]))["state"] == "succeeded"


async def test_browser_operation_progress_refreshes_in_place(clean_database: str) -> None:
    """An operation another replica runs (its lease held): the page follows its steps
    without a reload, and stops asking once it is done."""
    operation_id = str(uuid.uuid4())
    engine = create_engine(clean_database)
    sessions = create_sessionmaker(engine)
    now = datetime.now(UTC)
    async with sessions.begin() as session:
        await session.execute(
            insert(store.Operation).values(
                id=operation_id,
                kind="replay",
                state="running",
                origin={"since": now.isoformat(), "until": now.isoformat()},
                total=10,
                done=0,
                failed=0,
                created_at=now,
                snapshot_at=now,
                started_at=now,
                lease_owner="another-replica",
                lease_until=now + timedelta(hours=1),
            )
        )

    async def advance(done: int, state: str = "running") -> None:
        async with sessions.begin() as session:
            await session.execute(
                update(store.Operation)
                .where(store.Operation.id == operation_id)
                .values(done=done, state=state)
            )

    try:
        async with running_stack(clean_database) as stack:
            loop = asyncio.get_running_loop()

            def drive() -> None:
                driver = chromium()
                try:
                    log_in(
                        driver, stack.service_url, API_TOKEN, start=f"/operations/{operation_id}"
                    )
                    driver.execute_script("window.notReloaded = true")
                    assert "0 of 10 done" in text_of(driver, "operation-progress")
                    for done, state in ((4, "running"), (10, "done")):
                        asyncio.run_coroutine_threadsafe(advance(done, state), loop).result(10)
                        deadline = time.monotonic() + WAIT_SECONDS
                        while f"{done} of 10 done" not in text_of(driver, "operation-progress"):
                            assert time.monotonic() < deadline, "the progress never refreshed"
                            time.sleep(0.2)
                    assert text_of(driver, "operation-state") == "done"
                    assert driver.execute_script("return window.notReloaded") is True
                    refreshed = driver.find_element(By.ID, "operation").get_attribute(
                        "data-refreshed-at"
                    )
                    time.sleep(2.5)  # it stopped asking: no later refresh
                    assert (
                        driver.find_element(By.ID, "operation").get_attribute("data-refreshed-at")
                        == refreshed
                    )
                    assert csp_violations(driver) == []
                finally:
                    driver.quit()

            await asyncio.to_thread(drive)
    finally:
        await engine.dispose()
