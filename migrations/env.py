"""Alembic environment: async engine, URL from the service settings, batch mode for SQLite."""

from __future__ import annotations

import asyncio
from logging.config import fileConfig
from typing import Any

from alembic import context
from sqlalchemy.engine import Connection

from service.settings import get_settings
from service.store import Base, create_engine
from service.store.models import UtcDateTime

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logging", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def _database_url() -> str:
    # A caller (the CLI, the tests) may pass the URL; otherwise DATABASE_URL decides.
    url = config.attributes.get("database_url")
    return str(url) if url else get_settings().DATABASE_URL


def _render_item(type_: str, obj: Any, autogen_context: Any) -> str | bool:
    # Our UtcDateTime decorator is a plain timestamptz in the schema.
    if type_ == "type" and isinstance(obj, UtcDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
        render_item=_render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    engine = create_engine(_database_url())
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_configure)
            await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run against a database")
asyncio.run(_run_async())
