"""Engines and sessions: the one place that turns DATABASE_URL into a driver."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

_READ_ONLY = "visma_hooks_read_only"
_FORMS = "use sqlite:///path or postgresql://user:password@host:port/database"


class DatabaseUrlError(ValueError):
    """DATABASE_URL is not a URL, or names a database we do not support."""


def async_url(url: str) -> str:
    """DATABASE_URL with the async driver chosen (`sqlite+aiosqlite`, `postgresql+asyncpg`)."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        # The text may hold a password: show it only when it cannot.
        shown = "" if "@" in url else f" ({url!r})"
        raise DatabaseUrlError(f"DATABASE_URL is not a database URL{shown}: {_FORMS}") from None
    backend, _, driver = parsed.drivername.partition("+")
    if backend == "sqlite":
        return str(parsed.set(drivername="sqlite+aiosqlite"))
    if backend == "postgresql":
        if driver and driver != "asyncpg":
            raise DatabaseUrlError(f"DATABASE_URL driver {driver!r} is not async; use asyncpg")
        return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
    raise DatabaseUrlError(
        f"DATABASE_URL names a {backend!r} database, which visma-hooks cannot use: {_FORMS}"
    )


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An async engine for DATABASE_URL; SQLite gets WAL, foreign keys and a busy timeout."""
    full = async_url(url)
    if is_sqlite(full):
        # No folder is made here: only `migrate` (and `serve` on SQLite) creates a database.
        engine = create_async_engine(full, connect_args={"timeout": 30}, **kwargs)
        event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
        event.listen(engine.sync_engine, "begin", _sqlite_on_begin)
        return engine
    return create_async_engine(full, pool_pre_ping=True, **kwargs)


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def read_only(engine: AsyncEngine) -> AsyncEngine:
    """The engine for transactions that only read: on SQLite they do not take the write lock."""
    return engine.execution_options(**{_READ_ONLY: True})


def create_readers(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions for transactions that only read: on SQLite they do not take the write lock."""
    return async_sessionmaker(read_only(engine), expire_on_commit=False)


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # pysqlite's own transaction handling defers BEGIN and breaks SAVEPOINT; we emit BEGIN
    # ourselves (SQLAlchemy's documented recipe).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    for pragma in sqlite_pragmas():
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


_WAL_CHECKPOINT_PAGES = 10_000
_WAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024


def sqlite_pragmas(*, busy_timeout_seconds: float = 30.0) -> list[str]:
    """What every connection to the SQLite file sets (as `PRAGMA ...`), the writer's too.

    WAL, and `synchronous=FULL`: a commit is on disk before anyone is told. The checkpoint
    size is per connection, so it is set on every one: whichever commits past it checkpoints.
    Each delivery dirties a few random index pages, and a checkpoint copies each page of the
    WAL back once however often it was written: checkpointing every 10,000 pages of WAL
    instead of SQLite's 1,000 writes each hot page back far fewer times (docs/benchmarks.md
    has what it gained). The size limit keeps the WAL file from staying that large after a
    burst.
    """
    return [
        # Only takes effect before the first table exists: every new file gets it (an older
        # file is rewritten once by `migrate`); retention then gives freed pages back.
        "auto_vacuum=INCREMENTAL",
        "journal_mode=WAL",
        "synchronous=FULL",
        f"wal_autocheckpoint={_WAL_CHECKPOINT_PAGES}",
        f"journal_size_limit={_WAL_SIZE_LIMIT_BYTES}",
        "foreign_keys=ON",
        f"busy_timeout={int(busy_timeout_seconds * 1000)}",
    ]


def _sqlite_on_begin(conn: Any) -> None:
    # IMMEDIATE takes the write lock at BEGIN, so two writers queue instead of one failing
    # with "database is locked" when it upgrades a read lock. Readers (WAL) need no lock, and
    # must not hold one: a long page of the inbox would stall the webhook writer.
    read_only = conn.get_execution_options().get(_READ_ONLY, False)
    conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")
