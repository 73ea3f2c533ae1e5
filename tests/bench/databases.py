"""The benchmark's own databases: made fresh, migrated with `visma-hooks migrate`, seeded, counted.

PostgreSQL databases are reset by dropping their `public` schema, so this refuses any database
whose name does not contain "bench": the test databases are never touched.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

from service.store import is_sqlite

VISMA_HOOKS = Path(sys.executable).with_name("visma-hooks")
SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"


def postgres_connect_kwargs(url: str) -> dict[str, Any]:
    parsed = make_url(url.replace("postgres://", "postgresql://", 1))
    kwargs: dict[str, Any] = parsed.translate_connect_args(username="user")
    kwargs.update(parsed.query)
    return kwargs


def reset(url: str) -> None:
    """An empty, migrated database at `url` (created if missing)."""
    if is_sqlite(url):
        path = Path(make_url(url).database or "")
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        path.parent.mkdir(parents=True, exist_ok=True)
    else:
        asyncio.run(_reset_postgres(url))
    migrate(url)


def migrate(url: str) -> None:
    command = (
        [str(VISMA_HOOKS), "migrate"]
        if VISMA_HOOKS.exists()
        else [sys.executable, "-m", "service.cli", "migrate"]
    )
    subprocess.run(
        command, env={**os.environ, "DATABASE_URL": url}, check=True, capture_output=True
    )


async def _reset_postgres(url: str) -> None:
    kwargs = postgres_connect_kwargs(url)
    name = kwargs.get("database") or ""
    if "bench" not in name:
        raise SystemExit(f"refusing to reset PostgreSQL database {name!r}: its name lacks 'bench'")
    admin = await asyncpg.connect(**{**kwargs, "database": "postgres"})
    try:
        exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    conn = await asyncpg.connect(**kwargs)
    try:
        await conn.execute("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public")
    finally:
        await conn.close()


def execute(url: str, *statements: str) -> None:
    """Run plain SQL statements in one transaction."""
    if is_sqlite(url):
        with sqlite3.connect(make_url(url).database or "") as conn:
            for statement in statements:
                conn.execute(statement)
        return

    async def run() -> None:
        conn = await asyncpg.connect(**postgres_connect_kwargs(url))
        try:
            async with conn.transaction():
                for statement in statements:
                    await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


def vacuum(url: str) -> None:
    """Fresh statistics (and, on PostgreSQL, a visibility map for index-only scans)."""
    if is_sqlite(url):
        with sqlite3.connect(make_url(url).database or "") as conn:
            conn.execute("ANALYZE")
        return

    async def run() -> None:
        conn = await asyncpg.connect(**postgres_connect_kwargs(url))
        try:
            await conn.execute("VACUUM ANALYZE")
        finally:
            await conn.close()

    asyncio.run(run())


def fetch_value(url: str, query: str, *args: Any) -> Any:
    """The first column of the first row of `query` (`?` placeholders on SQLite, `$n` else)."""
    if is_sqlite(url):
        with sqlite3.connect(make_url(url).database or "") as conn:
            return conn.execute(query, args).fetchone()[0]

    async def run() -> Any:
        conn = await asyncpg.connect(**postgres_connect_kwargs(url))
        try:
            return await conn.fetchval(query, *args)
        finally:
            await conn.close()

    return asyncio.run(run())


def count_deliveries(url: str, prefix: str, *, linked: bool = False) -> int:
    """How many deliveries are stored whose notification id starts with `prefix` (with
    `linked`, only those linked to the job they name)."""
    placeholder = "?" if is_sqlite(url) else "$1"
    query = f"SELECT count(*) FROM deliveries WHERE notification_id LIKE {placeholder}"
    if linked:
        query += " AND job_id IS NOT NULL"
    return int(fetch_value(url, query, f"{prefix}-%"))


def seed_jobs(url: str, job_ids: Sequence[str], *, state: str) -> None:
    """Jobs for deliveries to match, in `state`, each with a Visma job id (as after its 202):
    a finished one is settled (a webhook changes nothing on it), an open one is made due."""
    now = datetime.now(UTC)
    rows = [(job_id, f"v-{job_id}", state, now) for job_id in job_ids]
    if is_sqlite(url):
        with sqlite3.connect(make_url(url).database or "") as conn:
            conn.executemany(
                "INSERT INTO jobs (id, visma_job_id, state, method, path, tags, notify,"
                " submitted_at, last_modified_at, check_attempts)"
                " VALUES (?, ?, ?, 'POST', '/v1/customer', '{}', 1, ?, ?, 0)",
                [
                    (j, v, s, at.strftime(SQLITE_TIME), at.strftime(SQLITE_TIME))
                    for j, v, s, at in rows
                ],
            )
        return

    async def run() -> None:
        conn = await asyncpg.connect(**postgres_connect_kwargs(url))
        try:
            await conn.executemany(
                "INSERT INTO jobs (id, visma_job_id, state, method, path, tags, notify,"
                " submitted_at, last_modified_at, check_attempts)"
                " VALUES ($1, $2, $3, 'POST', '/v1/customer', '{}', true, $4, $4, 0)",
                rows,
            )
        finally:
            await conn.close()

    asyncio.run(run())


def safe_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def seed_old_deliveries(url: str, count: int, *, days_old: float = 60) -> float:
    """`count` small inbox rows received `days_old` days ago (past any retention), linked to no
    job: what a purge finds to remove. Returns the seconds it took."""
    started = datetime.now(UTC)
    at = started - timedelta(days=days_old)
    body = b'{"id":"old","stateLocation":"https://api.finance.visma.net/v1/background/old"}'
    if is_sqlite(url):
        with sqlite3.connect(make_url(url).database or "") as conn:
            conn.execute(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
                " INSERT INTO deliveries (id, kind, notification_id, received_at, headers, body,"
                " verified) SELECT 'old-' || i, 'visma', 'old-n-' || i, ?, '{}', ?, 1 FROM n",
                (count, at.strftime(SQLITE_TIME), body),
            )
    else:

        async def run() -> None:
            conn = await asyncpg.connect(**postgres_connect_kwargs(url))
            try:
                await conn.execute(
                    "INSERT INTO deliveries (id, kind, notification_id, received_at, headers,"
                    " body, verified) SELECT 'old-' || i, 'visma', 'old-n-' || i, $2, '{}', $3,"
                    " true FROM generate_series(1, $1) AS i",
                    count,
                    at,
                    body,
                )
                # Old rows in production were vacuumed long ago (hint bits set, visibility map
                # current): without this, autovacuum's first pass over a million fresh rows
                # would land in the measured load and be counted as the purge's cost.
                await conn.execute("VACUUM ANALYZE deliveries")
            finally:
                await conn.close()

        asyncio.run(run())
    return (datetime.now(UTC) - started).total_seconds()


def count_old_deliveries(url: str) -> int:
    """How many of `seed_old_deliveries`'s rows are left."""
    return int(fetch_value(url, "SELECT count(*) FROM deliveries WHERE id LIKE 'old-%'"))
