"""The schema's revision: where the Alembic scripts are, which revision is head, and upgrading.

The scripts live in the repository's `migrations/` folder (`alembic.ini` names it, for
`alembic revision`); a wheel ships the same folder as `service/migrations`, so an installed
`visma-hooks migrate` finds them from any folder.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import text
from sqlalchemy.engine import Connection, make_url

from service.store.engine import async_url, create_engine, is_sqlite, read_only

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

_PACKAGE = Path(__file__).resolve().parent.parent
# One PostgreSQL advisory lock key for "the schema is being upgraded": replicas started together
# with `serve --migrate` take turns, and each after the first finds the schema at head.
MIGRATION_LOCK_KEY = 0x76685F736368656D  # "vh_schem"

MIGRATE_HINT = "run `visma-hooks migrate`"
NO_SCHEMA = f"the database has no schema yet: {MIGRATE_HINT}"
BEHIND = "the database schema is at {current}, this version needs {head}: " + MIGRATE_HINT
UNKNOWN = (
    "the database schema is at {current}, which this version of visma-hooks does not know: "
    "a newer release migrated it; run that release"
)
WAITING = "another process is upgrading the database schema; waiting for it"
REWRITTEN = (
    "; the SQLite file was rewritten once (VACUUM) so that retention can give freed space back"
)
_INCREMENTAL = 2
"""`PRAGMA auto_vacuum`'s value for INCREMENTAL."""


def script_location() -> Path:
    """The folder that holds `env.py` and `versions/`: in the package, else the checkout's."""
    packaged = _PACKAGE / "migrations"
    if (packaged / "env.py").is_file():
        return packaged
    return _PACKAGE.parent / "migrations"


def alembic_config(database_url: str) -> Config:
    """Alembic's configuration for this package's migrations, on `database_url`."""
    config = Config()
    # The option is read with ConfigParser interpolation: a % in the path must be doubled.
    config.set_main_option("script_location", str(script_location()).replace("%", "%%"))
    config.attributes["database_url"] = database_url
    config.attributes["configure_logging"] = False
    return config


@functools.cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config(""))


def head_revision() -> str:
    """The newest revision this version of the code knows."""
    head = _scripts().get_current_head()
    if head is None:
        raise RuntimeError(f"no migrations found in {script_location()}")
    return head


def _is_known(revision: str) -> bool:
    try:
        return _scripts().get_revision(revision) is not None
    except CommandError:
        return False


@dataclass(frozen=True)
class SchemaState:
    """The revisions a database records (none: it has no schema) against this code's head."""

    current: tuple[str, ...]
    head: str

    @property
    def at_head(self) -> bool:
        return self.current == (self.head,)

    def problem(self) -> str | None:
        """What is wrong with the schema, in words; None when it is at head."""
        if self.at_head:
            return None
        if not self.current:
            return NO_SCHEMA
        current = ", ".join(self.current)
        if all(_is_known(revision) for revision in self.current):
            return BEHIND.format(current=current, head=self.head)
        return UNKNOWN.format(current=current)


class SchemaError(Exception):
    """The database's schema is one this code cannot upgrade (a newer release's)."""


@dataclass(frozen=True)
class Migration:
    """What `migrate` did: the revisions before and after, and the SQLite file it created."""

    url: str
    before: tuple[str, ...]
    after: tuple[str, ...]
    created_file: Path | None = None
    vacuumed: bool = False
    """SQLite: the file was rewritten once so that retention can hand freed pages back."""

    def summary(self) -> str:
        return self._what() + (REWRITTEN if self.vacuumed else "")

    def _what(self) -> str:
        after = ", ".join(self.after)
        where = safe_url(self.url)
        if self.created_file is not None:
            return f"created the database {self.created_file} at revision {after}"
        if not self.before:
            return f"created the database schema at revision {after}: {where}"
        if self.before != self.after:
            return f"upgraded the database schema from {', '.join(self.before)} to {after}: {where}"
        return f"database is up to date: already at revision {after}: {where}"


def sqlite_path(database_url: str) -> Path | None:
    """The absolute path of a SQLite file URL (relative ones resolve against the current
    folder, as SQLite does); None for PostgreSQL and in-memory databases."""
    url = make_url(async_url(database_url))
    if not is_sqlite(url.drivername) or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database).expanduser().absolute()


def safe_url(database_url: str) -> str:
    """DATABASE_URL with its password hidden, for messages."""
    return make_url(database_url).render_as_string(hide_password=True)


def _current(connection: Connection) -> tuple[str, ...]:
    return tuple(sorted(MigrationContext.configure(connection).get_current_heads()))


async def current_revisions(connection: AsyncConnection) -> tuple[str, ...]:
    """The revisions the database records; () when it has no schema."""
    return await connection.run_sync(_current)


async def schema_state(engine: AsyncEngine) -> SchemaState:
    """Where the database's schema stands against this code's head (one short read)."""
    async with read_only(engine).connect() as connection:
        current = await current_revisions(connection)
    return SchemaState(current, head_revision())


def migrate(database_url: str, *, on_wait: Callable[[str], None] | None = None) -> Migration:
    """Upgrade the database at `database_url` to head, creating a missing SQLite file.

    On PostgreSQL the upgrade holds an advisory lock, so processes that migrate at once take
    turns; `on_wait` hears when this one has to wait for another.
    """
    path = sqlite_path(database_url)
    created = path if path is not None and not path.exists() else None
    if created is not None:
        created.parent.mkdir(parents=True, exist_ok=True)
    migration = asyncio.run(_migrate(database_url, on_wait))
    if created is not None:
        return Migration(database_url, migration.before, migration.after, created)
    return migration


async def _migrate(database_url: str, on_wait: Callable[[str], None] | None) -> Migration:
    engine = create_engine(database_url)
    config = alembic_config(database_url)
    try:
        if is_sqlite(database_url):
            # SQLite's write lock (BEGIN IMMEDIATE, taken by the upgrade) serialises
            # migrations; a connection held open here would only wait for it.
            before = _upgradable((await schema_state(engine)).current)
            await asyncio.to_thread(command.upgrade, config, "head")
            after = (await schema_state(engine)).current
            vacuumed = await _use_incremental_vacuum(engine)
            return Migration(database_url, before, after, vacuumed=vacuumed)
        async with engine.connect() as connection:
            # The lock belongs to this session, not to a transaction: autocommit keeps the
            # connection from sitting idle in one while the upgrade runs on another.
            connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
            await _lock(connection, on_wait)
            try:
                before = _upgradable(await current_revisions(connection))
                await asyncio.to_thread(command.upgrade, config, "head")
                after = await current_revisions(connection)
            finally:
                await connection.execute(
                    text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY}
                )
            return Migration(database_url, before, after)
    finally:
        await engine.dispose()


async def _use_incremental_vacuum(engine: AsyncEngine) -> bool:
    """A SQLite file made before incremental vacuum was turned on for new files keeps its
    freed pages forever: rewrite it once, which turns it on. True if it was rewritten."""
    async with engine.connect() as connection:
        raw = await connection.get_raw_connection()
        driver = raw.driver_connection  # aiosqlite's: VACUUM may not run inside a transaction
        assert driver is not None
        async with driver.execute("PRAGMA auto_vacuum") as cursor:
            row = await cursor.fetchone()
        if row is not None and row[0] == _INCREMENTAL:
            return False
        await driver.execute("PRAGMA auto_vacuum=INCREMENTAL")
        await driver.execute("VACUUM")
        return True


def _upgradable(current: tuple[str, ...]) -> tuple[str, ...]:
    if not all(_is_known(revision) for revision in current):
        raise SchemaError(SchemaState(current, head_revision()).problem())
    return current


async def _lock(connection: AsyncConnection, on_wait: Callable[[str], None] | None) -> None:
    key = {"key": MIGRATION_LOCK_KEY}
    if (await connection.execute(text("SELECT pg_try_advisory_lock(:key)"), key)).scalar():
        return
    if on_wait is not None:
        on_wait(WAITING)
    await connection.execute(text("SELECT pg_advisory_lock(:key)"), key)
