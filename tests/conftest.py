"""Fixtures: one migrated database per run (SQLite, or PostgreSQL via TEST_DATABASE_URL)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from hypothesis import settings as hypothesis_settings
from sqlalchemy import text

from service.cli import migrate
from service.settings import Settings, get_settings
from service.store import Base, JobStateCount, create_engine, is_sqlite
from tests.sink import Sink, running_sink

WEBHOOK_SECRET = "test-webhook-secret"
API_TOKEN = "test-api-token"
# CI explores a fixed set of generated examples so a run is reproducible; locally each run
# explores new ones.
hypothesis_settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")

REQUIRE_DATABASE = os.environ.get("TEST_REQUIRE_DATABASE", "").lower() in ("1", "true", "yes")


def make_settings(database_url: str, **overrides: Any) -> Settings:
    """Settings for a test: never read from a developer's .env or environment by surprise."""
    values: dict[str, Any] = {
        "DATABASE_URL": database_url,
        "VISMA_WEBHOOK_SECRETS": [WEBHOOK_SECRET],
        "API_TOKENS": [API_TOKEN],
        "VISMA_CLIENT_ID": "sim-client",
        "VISMA_CLIENT_SECRET": "sim-secret",
        "VISMA_TENANT_ID": "sim-tenant",
        "POLL_AFTER_SECONDS": 300,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


async def _reset_postgres(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
    finally:
        await engine.dispose()


@pytest.fixture(scope="session", name="database_url")
def fixture_database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = os.environ.get("TEST_DATABASE_URL") or (
        f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"
    )
    if not is_sqlite(url):
        try:
            asyncio.run(_reset_postgres(url))
        except OSError as exc:
            message = f"PostgreSQL at TEST_DATABASE_URL is not reachable: {exc}"
            if REQUIRE_DATABASE:
                pytest.fail(message, pytrace=False)
            pytest.skip(message)
    migrate(url)
    return url


@pytest.fixture(autouse=True)
def fixture_clear_settings_cache() -> Iterator[None]:
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


async def _empty_tables(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            for table in reversed(Base.metadata.sorted_tables):
                await conn.execute(table.delete())
            # Deleting jobs made their triggers record the deletions: start from no counts.
            await conn.execute(JobStateCount.__table__.delete())
    finally:
        await engine.dispose()


@pytest.fixture(name="clean_database")
async def fixture_clean_database(database_url: str) -> AsyncIterator[str]:
    """The database, empty at the start of the test (servers and workers open their own
    sessions, so a rolled-back transaction cannot isolate tests here)."""
    await _empty_tables(database_url)
    yield database_url
    await _empty_tables(database_url)


@pytest.fixture(name="sink_server", scope="module")
async def fixture_sink_server() -> AsyncIterator[Sink]:
    """An alert and callback receiver over loopback, one per test module (each uvicorn
    shutdown costs ~0.2 s)."""
    async with running_sink() as sink:
        yield sink


@pytest.fixture(name="sink")
def fixture_sink(sink_server: Sink) -> Sink:
    """The module's receiver, emptied for this test."""
    sink_server.reset()
    return sink_server
