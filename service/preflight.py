"""Checks before a command starts: the settings, DATABASE_URL and the database it names.

Each mistake becomes a `ConfigError` whose text is one line that says what to fix (the CLI
prints it and exits with status 2), not a traceback. Commands that only use a database never
create one: only `migrate`, and `serve` on SQLite, do.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

from pydantic import ValidationError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from service.settings import Settings
from service.store import (
    DatabaseUrlError,
    Migration,
    SchemaError,
    async_url,
    create_engine,
    is_sqlite,
    migrate,
    safe_url,
    schema_state,
    sqlite_path,
)

MISSING_SQLITE = (
    "no database at {path} (DATABASE_URL {url}): create it with `visma-hooks migrate`, "
    "or set DATABASE_URL to the one you mean"
)
SQLITE_FOLDER = "DATABASE_URL names a folder, not a SQLite file: {path}"
NO_POSTGRES_DATABASE = (
    'PostgreSQL at {where} has no database "{name}": create it (createdb {name}) '
    "or correct DATABASE_URL"
)
CANNOT_OPEN = "cannot open the database {url}: {reason}"
SERVE_MIGRATE = " (or start with `visma-hooks serve --migrate`)"


class ConfigError(Exception):
    """A configuration mistake, said in one line."""


def settings_error(exc: ValidationError) -> ConfigError:
    """Every invalid setting, by name, in one line (never the value: it may be a secret)."""
    problems = []
    for error in exc.errors():
        name = ".".join(str(part) for part in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"{name}: {message}" if name else message)
    return ConfigError(_one_line("invalid settings: " + "; ".join(problems)))


def security_warnings(settings: Settings) -> list[str]:
    """One line for each empty setting that leaves a door shut (or the service blind)."""
    warnings = []
    if not settings.webhook_secrets():
        warnings.append(
            "VISMA_WEBHOOK_SECRETS is empty: every webhook from Visma is refused (401), "
            "so jobs resolve only by polling"
        )
    if not settings.api_tokens():
        warnings.append("API_TOKENS is empty: every /api/ request is refused (401)")
    if not settings.STATUS_WEBHOOK_TOKEN.get_secret_value():
        warnings.append("STATUS_WEBHOOK_TOKEN is empty: status-page webhooks are off (404)")
    if not (settings.VISMA_CLIENT_ID and settings.VISMA_CLIENT_SECRET.get_secret_value()):
        warnings.append(
            "VISMA_CLIENT_ID or VISMA_CLIENT_SECRET is empty: jobs cannot be sent to Visma "
            "or their state read"
        )
    return warnings


def check_listen(host: str, port: int) -> None:
    """ConfigError when `host:port` cannot be listened on (in use, not this machine's, not
    allowed), checked before the start: one line and exit 2, not a failure after startup."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"--host {host}: {exc.strerror}") from None
    family, kind, proto, _name, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        # As uvicorn binds: SO_REUSEADDR lets a port in TIME_WAIT be taken, not one in use.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def check_url(database_url: str) -> None:
    """DATABASE_URL names a database we can drive."""
    try:
        async_url(database_url)
    except DatabaseUrlError as exc:
        raise ConfigError(str(exc)) from exc


async def open_database(database_url: str, *, hint: str = "") -> AsyncEngine:
    """An engine on the existing database, its schema at head; never creates one.

    `hint` ends the complaint about a schema that is not at head.
    """
    check_url(database_url)
    path = _sqlite_file(database_url)
    if path is not None and not path.exists():
        raise ConfigError(MISSING_SQLITE.format(path=path, url=safe_url(database_url)))
    engine = create_engine(database_url)
    try:
        problem = (await schema_state(engine)).problem()
    except Exception as exc:
        await engine.dispose()
        error = _database_error(exc, database_url)
        if error is None:
            raise
        raise error from exc
    if problem is not None:
        await engine.dispose()
        raise ConfigError(problem + hint)
    return engine


async def check_schema(database_url: str, *, hint: str = "") -> None:
    """The database exists and its schema is at head."""
    engine = await open_database(database_url, hint=hint)
    await engine.dispose()


def upgrade(database_url: str, *, on_wait: Callable[[str], None] | None = None) -> Migration:
    """`migrate`: the database at head, made first when it is a missing SQLite file."""
    check_url(database_url)
    _sqlite_file(database_url)
    try:
        return migrate(database_url, on_wait=on_wait)
    except SchemaError as exc:
        raise ConfigError(str(exc)) from exc
    except Exception as exc:
        error = _database_error(exc, database_url)
        if error is None:
            raise
        raise error from exc


def _sqlite_file(database_url: str) -> Path | None:
    path = sqlite_path(database_url)
    if path is not None and path.is_dir():
        raise ConfigError(SQLITE_FOLDER.format(path=path))
    return path


def _database_error(exc: Exception, database_url: str) -> ConfigError | None:
    """What `exc` says about opening the database, in one line; None for anything else."""
    url = make_url(async_url(database_url))
    if isinstance(exc, DBAPIError):
        code = getattr(exc.orig, "sqlstate", None)
        if code == "3D000" and not is_sqlite(url.drivername):  # invalid_catalog_name
            where = f"{url.host or 'localhost'}:{url.port or 5432}"
            return ConfigError(NO_POSTGRES_DATABASE.format(where=where, name=url.database))
        reason = str(exc.orig) if exc.orig is not None else str(exc)
    elif isinstance(exc, OSError | TimeoutError):
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    else:
        return None
    return ConfigError(_one_line(CANNOT_OPEN.format(url=safe_url(database_url), reason=reason)))


def _one_line(text: str) -> str:
    return " ".join(text.split())
