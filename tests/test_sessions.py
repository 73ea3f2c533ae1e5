"""Dashboard sessions end, over real HTTP on loopback: logging out (with the page's CSRF token)
revokes the session server-side, a token taken out of API_TOKENS ends the sessions made with
it, sessions are independent of each other, and expired ones go with retention."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from service import store
from service.app import create_app
from service.domain import Retention
from service.flows import PurgeSettings, purge
from service.web.dashboard import LOGOUT_REFUSED
from tests.conftest import API_TOKEN, make_settings
from tests.servers import bind_loopback, serving

pytestmark = pytest.mark.e2e

OTHER_TOKEN = "test-other-token"
READ_TOKEN = "test-read-token"
LOGIN = re.compile(r"^/login\?next=")
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@contextlib.asynccontextmanager
async def service(database_url: str, **overrides: Any) -> AsyncIterator[str]:
    """The service as `serve` runs it, on a loopback port of its own; its base URL."""
    settings = make_settings(database_url, **overrides)
    async with serving(create_app(settings), bind_loopback(), settings=settings) as url:
        yield url


def browser(base: str, cookie: str | None = None) -> httpx.AsyncClient:
    """A client like a browser (cookies kept, no bearer header), holding `cookie` if given."""
    cookies = {"vh_session": cookie} if cookie else None
    return httpx.AsyncClient(base_url=base, cookies=cookies, timeout=30)


async def logged_in(http: httpx.AsyncClient, token: str = API_TOKEN) -> str:
    """Log in with `token`; the session cookie's value."""
    answer = await http.post("/login", data={"token": token, "next": "/jobs"})
    assert answer.status_code == 303, answer.text
    return http.cookies["vh_session"]


async def opens_jobs(base: str, cookie: str) -> bool:
    """Whether `cookie` alone opens /jobs (else the answer sends it to the login)."""
    async with browser(base, cookie) as http:
        answer = await http.get("/jobs")
    if answer.status_code == 200:
        return True
    assert answer.status_code == 303 and LOGIN.match(answer.headers["location"]), answer
    return False


async def page_csrf(http: httpx.AsyncClient) -> str:
    """The CSRF token the page's logout form carries."""
    page = await http.get("/jobs")
    assert page.status_code == 200
    found = CSRF.search(page.text)
    assert found is not None, "the logout form carries no CSRF token"
    return found.group(1)


async def test_log_out_with_the_csrf_token_ends_the_session(clean_database: str) -> None:
    async with service(clean_database) as base, browser(base) as http:
        cookie = await logged_in(http)
        assert await opens_jobs(base, cookie)
        answer = await http.post("/logout", data={"csrf": await page_csrf(http)})
        assert answer.status_code == 303 and answer.headers["location"] == "/login"
        assert "vh_session" not in http.cookies
        # A copy of the old cookie (another tab, a stolen one) opens nothing any more.
        assert not await opens_jobs(base, cookie)
        again = await http.post("/login", data={"token": API_TOKEN})
        assert again.status_code == 303
        assert http.cookies["vh_session"] != cookie
        assert (await http.get("/jobs")).status_code == 200


async def test_log_out_without_the_csrf_token_is_refused_and_the_session_goes_on(
    clean_database: str,
) -> None:
    async with service(clean_database) as base, browser(base) as http:
        cookie = await logged_in(http)
        for form in ({}, {"csrf": "guess"}, {"csrf": ""}):
            refused = await http.post("/logout", data=form)
            assert refused.status_code == 403, form
            assert LOGOUT_REFUSED in refused.text
        # Another site's form has no CSRF token and no url-encoded body of ours.
        forged = await http.post("/logout", content=b"{}", headers={"content-type": "text/plain"})
        assert forged.status_code == 403
        assert await opens_jobs(base, cookie)
        assert (await http.get("/jobs")).status_code == 200


async def test_two_sessions_are_independent(clean_database: str) -> None:
    async with (
        service(clean_database) as base,
        browser(base) as first,
        browser(base) as second,
    ):
        first_cookie = await logged_in(first)
        second_cookie = await logged_in(second)
        assert first_cookie != second_cookie
        first_csrf, second_csrf = await page_csrf(first), await page_csrf(second)
        assert first_csrf != second_csrf
        # One session's CSRF token does not log the other out.
        assert (await second.post("/logout", data={"csrf": first_csrf})).status_code == 403
        assert await opens_jobs(base, second_cookie)
        assert (await first.post("/logout", data={"csrf": first_csrf})).status_code == 303
        assert not await opens_jobs(base, first_cookie)
        assert await opens_jobs(base, second_cookie)
        assert (await second.post("/logout", data={"csrf": second_csrf})).status_code == 303
        assert not await opens_jobs(base, second_cookie)


async def test_a_token_taken_out_of_api_tokens_ends_its_sessions_after_a_restart(
    clean_database: str,
) -> None:
    both = [API_TOKEN, OTHER_TOKEN]
    async with service(clean_database, API_TOKENS=both) as base, browser(base) as http:
        removed = await logged_in(http, API_TOKEN)
    async with service(clean_database, API_TOKENS=both) as base, browser(base) as http:
        kept = await logged_in(http, OTHER_TOKEN)
        assert await opens_jobs(base, removed)  # a restart alone ends no session
    async with service(clean_database, API_TOKENS=[OTHER_TOKEN]) as base:
        assert not await opens_jobs(base, removed)
        assert await opens_jobs(base, kept)


async def test_a_token_moved_to_api_read_tokens_keeps_its_session_read_only(
    clean_database: str,
) -> None:
    async with service(clean_database) as base, browser(base) as http:
        cookie = await logged_in(http)
        assert "read and write" in (await http.get("/jobs")).text
    async with (
        service(clean_database, API_TOKENS=[OTHER_TOKEN], API_READ_TOKENS=[API_TOKEN]) as base,
        browser(base, cookie) as http,
    ):
        page = await http.get("/jobs")
        assert page.status_code == 200
        assert "read only" in page.text


async def test_the_database_holds_neither_the_token_nor_the_cookie(clean_database: str) -> None:
    async with service(clean_database, API_READ_TOKENS=[READ_TOKEN]) as base:
        async with browser(base) as http:
            cookies = [await logged_in(http), await logged_in(http, READ_TOKEN)]
        rows = await session_rows(clean_database)
    assert len(rows) == 2
    stored = " ".join(f"{row.id} {row.token_fingerprint}" for row in rows)
    for secret in (API_TOKEN, READ_TOKEN, *cookies):
        assert secret not in stored


async def test_expired_sessions_go_with_retention_and_live_ones_stay(
    clean_database: str,
) -> None:
    quick = PurgeSettings(batch_size=500, duty=1.0, pause_seconds=0.0)
    async with service(clean_database) as base, browser(base) as http:
        cookie = await logged_in(http)
        engine = store.create_engine(clean_database)
        try:
            sessions = store.create_sessionmaker(engine)
            now = datetime.now(UTC)
            removed = await purge(sessions, Retention(), quick, now=now)
            assert removed["dashboard sessions"] == 0
            assert await opens_jobs(base, cookie)
            # Thirteen hours on, the twelve-hour session has expired: the purge takes it.
            later = await purge(sessions, Retention(), quick, now=now + timedelta(hours=13))
            assert later["dashboard sessions"] == 1
        finally:
            await engine.dispose()
        assert await session_rows(clean_database) == []
        assert not await opens_jobs(base, cookie)


async def test_logins_past_the_cap_remove_the_oldest_sessions(clean_database: str) -> None:
    engine = store.create_engine(clean_database)
    try:
        sessions = store.create_sessionmaker(engine)
        now = datetime.now(UTC)
        for n in range(4):
            async with sessions.begin() as db:
                await store.add_dashboard_session(
                    db,
                    row_id=f"{n:064d}",
                    token_fingerprint="f" * 64,
                    now=now + timedelta(seconds=n),
                    expires_at=now + timedelta(hours=12, seconds=n),
                    max_sessions=2,
                )
    finally:
        await engine.dispose()
    assert sorted(row.id for row in await session_rows(clean_database)) == [
        f"{n:064d}" for n in (2, 3)
    ]


async def session_rows(database_url: str) -> list[store.DashboardSession]:
    engine = store.create_engine(database_url)
    try:
        async with store.create_sessionmaker(engine).begin() as db:
            return list((await db.execute(select(store.DashboardSession))).scalars())
    finally:
        await engine.dispose()
