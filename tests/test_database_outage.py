"""A database that stops taking connections: the service answers 503 with a JSON body (senders
retry), never 500, and once the database is back the retried delivery is stored."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from service.cli import migrate
from service.store import is_sqlite
from service.web.errors import DATABASE_UNAVAILABLE
from service.web.health import DATABASE_NOT_REACHABLE
from tests.harness import in_process

TOKEN = "status-token-outage"
FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(name="own_database")
async def fixture_own_database(database_url: str) -> AsyncIterator[str]:
    """A PostgreSQL database of this test's own, so closing it disturbs no other test."""
    if is_sqlite(database_url):
        pytest.skip(
            "an outage is rehearsed on PostgreSQL: a SQLite file cannot refuse a connection"
        )
    url = make_url(database_url)
    name = f"outage_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(
        host=url.host, port=url.port or 5432, user=url.username, database="postgres"
    )
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        own = url.set(database=name).render_as_string(hide_password=False)
        await asyncio.to_thread(migrate, own)
        yield own
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def close_database(url: str, *, accept: bool) -> None:
    """Stop (or start again) taking connections, and cut the ones that are open."""
    parsed = make_url(url)
    admin = await asyncpg.connect(
        host=parsed.host, port=parsed.port or 5432, user=parsed.username, database="postgres"
    )
    try:
        allow = "true" if accept else "false"
        await admin.execute(f'ALTER DATABASE "{parsed.database}" ALLOW_CONNECTIONS {allow}')
        if not accept:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                parsed.database,
            )
    finally:
        await admin.close()


async def test_an_unreachable_database_answers_503_and_the_retry_is_stored(
    own_database: str,
) -> None:
    body = (FIXTURES / "status-component-update.json").read_bytes()
    async with in_process(own_database, STATUS_WEBHOOK_TOKEN=TOKEN) as harness:
        await close_database(own_database, accept=False)
        try:
            for method, path in [
                ("POST", f"/webhooks/status/{TOKEN}"),
                ("GET", "/api/v1/jobs"),
                ("GET", "/api/v1/status/components"),
            ]:
                response = await harness.client.request(method, path, content=body)
                assert response.status_code == 503, (path, response.text)
                assert response.json() == {"error": "unavailable", "detail": DATABASE_UNAVAILABLE}
                assert response.headers["retry-after"] == "5"
            # Readiness says it in words, never with the driver's exception text.
            ready = await harness.client.get("/readyz")
            assert ready.status_code == 503
            assert ready.json() == {"error": "unavailable", "detail": DATABASE_NOT_REACHABLE}
        finally:
            await close_database(own_database, accept=True)
        again = await harness.client.post(f"/webhooks/status/{TOKEN}", content=body)
        assert again.status_code == 200, again.text
        assert again.json()["status"] == "stored"
        listed = await harness.client.get("/api/v1/status/components")
        assert listed.json()["metadata"]["totalCount"] == 1
        assert json.loads(body)["component"]["id"] == listed.json()["items"][0]["id"]
