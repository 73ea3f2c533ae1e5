"""What every command of the CLI needs: the settings (a mistake in them said in one line) and
the configured database."""

from __future__ import annotations

from typing import TYPE_CHECKING

from service.settings import Settings, get_settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker


def load_settings() -> Settings:
    """The settings, or a ConfigError that names every invalid one."""
    from pydantic import ValidationError

    try:
        return get_settings()
    except ValidationError as exc:
        from service.preflight import settings_error

        raise settings_error(exc) from exc


async def open_db(
    settings: Settings,
) -> tuple[AsyncEngine, async_sessionmaker[AsyncSession]]:
    """The configured database, which must exist with its schema at head (never created)."""
    from service.preflight import open_database
    from service.store import create_sessionmaker

    engine = await open_database(settings.DATABASE_URL)
    return engine, create_sessionmaker(engine)
