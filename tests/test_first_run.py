"""A fresh folder to a running service: `serve` makes and migrates SQLite by itself, refuses a
PostgreSQL schema that is not at head (unless `--migrate`, which replicas may all give at
once), `/readyz` says why it is not ready, and `migrate` says what it did."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
from alembic import command
from alembic.script import ScriptDirectory

from service.cli import alembic_config, migrate
from service.simulator import Outcome, SimulatorState
from service.store import is_sqlite
from service.store.migrations import BEHIND, NO_SCHEMA, head_revision
from service.web.health import DATABASE_NOT_REACHABLE
from tests.cli_process import run_cli, serving, simulator_thread, visma_settings, wait_ready
from tests.harness import in_process

HEAD = head_revision()


def previous_revision() -> str:
    """The revision just before head: a schema one release behind."""
    down = ScriptDirectory.from_config(alembic_config("")).get_revision(HEAD).down_revision
    assert isinstance(down, str)
    return down


def test_migrate_says_what_it_did(tmp_path: Path) -> None:
    url = "sqlite:///db/hooks.db"  # relative: resolved against the folder it runs in
    ran = run_cli("migrate", cwd=tmp_path, DATABASE_URL=url)
    assert ran.code == 0, ran.err
    assert ran.out == f"created the database {tmp_path / 'db' / 'hooks.db'} at revision {HEAD}\n"

    before = previous_revision()
    command.downgrade(alembic_config(f"sqlite:///{tmp_path / 'db' / 'hooks.db'}"), before)
    ran = run_cli("jobs", cwd=tmp_path, DATABASE_URL=url)
    assert ran.code == 2
    assert ran.err_lines == [f"error: {BEHIND.format(current=before, head=HEAD)}"]
    ran = run_cli("migrate", cwd=tmp_path, DATABASE_URL=url)
    assert ran.out == f"upgraded the database schema from {before} to {HEAD}: {url}\n"
    ran = run_cli("migrate", cwd=tmp_path, DATABASE_URL=url)
    assert ran.out == f"database is up to date: already at revision {HEAD}: {url}\n"


def test_a_schema_from_a_newer_release_is_named_not_upgraded(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hooks.db'}"
    migrate(url)
    with sqlite3.connect(tmp_path / "hooks.db") as db:
        db.execute("UPDATE alembic_version SET version_num = 'ffffffffffff'")
    for args in (["jobs"], ["migrate"], ["serve"]):
        ran = run_cli(*args, cwd=tmp_path, DATABASE_URL=url)
        assert ran.code == 2, (args, ran.err)
        assert len(ran.err_lines) == 1 and "Traceback" not in ran.err
        assert (
            "the database schema is at ffffffffffff, which this version of visma-hooks does "
            "not know: a newer release migrated it" in ran.err_lines[0]
        )


@pytest.fixture(name="simulator")
def fixture_simulator() -> Iterator[tuple[SimulatorState, str]]:
    with simulator_thread() as simulator:
        yield simulator


@pytest.fixture(name="postgres_url")
def fixture_postgres_url(clean_database: str) -> Iterator[str]:
    """The PostgreSQL test database, put back at head afterwards whatever the test did to it."""
    if is_sqlite(clean_database):
        pytest.skip("SQLite is upgraded by `serve` itself: there is no refusal to see")
    try:
        yield clean_database
    finally:
        migrate(clean_database)


def test_serve_refuses_a_postgresql_schema_not_at_head(postgres_url: str, tmp_path: Path) -> None:
    hint = " (or start with `visma-hooks serve --migrate`)"
    command.downgrade(alembic_config(postgres_url), "base")
    ran = run_cli("serve", cwd=tmp_path, DATABASE_URL=postgres_url)
    assert ran.code == 2
    assert ran.err_lines == [f"error: {NO_SCHEMA}{hint}"]

    before = previous_revision()
    command.upgrade(alembic_config(postgres_url), before)
    ran = run_cli("serve", cwd=tmp_path, DATABASE_URL=postgres_url)
    assert ran.code == 2
    assert ran.err_lines == [f"error: {BEHIND.format(current=before, head=HEAD)}{hint}"]
    assert "`visma-hooks migrate`" in ran.err_lines[0]


def test_replicas_started_together_with_migrate_take_turns(
    postgres_url: str, tmp_path: Path
) -> None:
    command.downgrade(alembic_config(postgres_url), "base")
    with ExitStack() as stack:
        replicas = [
            stack.enter_context(
                serving(
                    "--migrate",
                    cwd=tmp_path,
                    log=tmp_path / f"replica-{n}.log",
                    DATABASE_URL=postgres_url,
                    API_TOKENS="t",
                )
            )
            for n in range(3)
        ]
        for replica in replicas:
            wait_ready(replica)
        logs = [replica.stderr() for replica in replicas]
    created = f"created the database schema at revision {HEAD}"
    already = f"database is up to date: already at revision {HEAD}"
    assert sorted(created in log for log in logs) == [False, False, True], logs
    assert sum(already in log for log in logs) == 2, logs
    assert all("Traceback" not in log for log in logs), logs


async def test_readyz_says_in_words_what_keeps_it_from_ready(clean_database: str) -> None:
    config = alembic_config(clean_database)
    async with in_process(clean_database) as harness:

        async def readyz() -> httpx.Response:
            return await harness.client.get("/readyz")

        assert (await readyz()).json()["status"] == "ready"
        before = previous_revision()
        try:
            await asyncio.to_thread(command.downgrade, config, before)
            answer = await readyz()
            assert answer.status_code == 503
            assert answer.json() == {
                "error": "unavailable",
                "detail": BEHIND.format(current=before, head=HEAD),
            }
            await asyncio.to_thread(command.downgrade, config, "base")
            assert (await readyz()).json()["detail"] == NO_SCHEMA
        finally:
            await asyncio.to_thread(migrate, clean_database)
        # Statements a pooled PostgreSQL connection prepared on the dropped table fail once.
        deadline = time.monotonic() + 10
        while (answer := await readyz()).status_code != 200:
            assert answer.json()["detail"] == DATABASE_NOT_REACHABLE
            assert time.monotonic() < deadline, answer.text
            await asyncio.sleep(0.05)


@pytest.mark.e2e
def test_a_fresh_folder_serves_and_a_dropped_webhook_resolves_by_polling(
    tmp_path: Path, simulator: tuple[SimulatorState, str]
) -> None:
    """The README's rehearsal, with POLL_AFTER_SECONDS shortened from 120 s to 1 s."""
    state, visma = simulator
    settings = {**visma_settings(visma), "API_TOKENS": "dev-token", "POLL_AFTER_SECONDS": "1"}
    with serving(cwd=tmp_path, log=tmp_path / "serve.log", **settings) as server:
        wait_ready(server)
        log = server.stderr()
        database = tmp_path / "data" / "visma-hooks.db"
        assert f"created the database {database} at revision {HEAD}" in log
        assert "warning: VISMA_WEBHOOK_SECRETS is empty: every webhook from Visma is refused" in log
        assert "warning: STATUS_WEBHOOK_TOKEN is empty" in log
        assert "API_TOKENS is empty" not in log and "VISMA_CLIENT_ID" not in log

        state.script(Outcome(kind="success", webhook="drop"))
        ran = run_cli(
            "submit", "--path", "/v1/customer", "--body", "{}", "--json", cwd=tmp_path, **settings
        )
        assert ran.code == 0, ran.err
        job = json.loads(ran.out)
        assert job["state"] == "accepted"

        auth = {"Authorization": "Bearer dev-token"}
        with httpx.Client(base_url=server.url, headers=auth) as api:
            deadline = time.monotonic() + 30
            while (seen := api.get(f"/api/v1/jobs/{job['id']}").json())["state"] == "accepted":
                assert time.monotonic() < deadline, seen
                time.sleep(0.1)
        assert seen["state"] == "succeeded" and seen["resolvedBy"] == "poll"

        ran = run_cli("job", job["id"][:8], cwd=tmp_path, **settings)
        assert ran.code == 0, ran.err
        assert f"job {job['id']}  succeeded" in ran.out and "resolvedBy: poll" in ran.out
