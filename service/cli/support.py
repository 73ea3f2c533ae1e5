"""What every command of the CLI needs: the settings (a mistake in them said in one line), the
configured database, and the parser and help formatter each group of commands is added to."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn

from service.settings import Settings, get_settings
from service.terminal import print_error

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

Command = Callable[[str, str], argparse.ArgumentParser]
"""Adds a command (its name, its help) to the CLI's parser and returns its own parser."""


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


class Parser(argparse.ArgumentParser):
    """argparse, with a usage mistake said in one line like every other error."""

    def error(self, message: str) -> NoReturn:
        print_error(f"{message} (see `{self.prog} --help`)")
        raise SystemExit(2)


class HelpFormatter(argparse.HelpFormatter):
    """Adds each flag's default to its help, when it has one worth showing."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            "%(default)" in text
            or not action.option_strings
            or default is None
            or default is False
            or default == []
            or default is argparse.SUPPRESS
        ):
            return text
        return f"{text} (default: %(default)s)"
