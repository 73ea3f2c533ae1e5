"""`visma-hooks serve` and `migrate`: the service itself, and the schema it needs."""

from __future__ import annotations

import argparse
import asyncio
from typing import TYPE_CHECKING

from service.cli.support import Command
from service.cli.support import load_settings as _settings
from service.settings import Settings
from service.terminal import print_line, print_note, print_warning

if TYPE_CHECKING:
    from alembic.config import Config

    from service.store import Migration


def add_commands(command: Command) -> None:
    """`serve` and `migrate`, added to the CLI's parser by its `command` factory."""
    serve = command("serve", "run the receiver, its API and its workers")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on; 0.0.0.0 for all")
    serve.add_argument("--port", type=_port, default=8000, help="port to listen on (1-65535)")
    serve.add_argument("--workers", type=_positive_int, default=1, help="worker processes")
    serve.add_argument("--ssl-certfile", metavar="PEM", help="TLS certificate: serve HTTPS")
    serve.add_argument("--ssl-keyfile", metavar="PEM", help="TLS private key for --ssl-certfile")
    serve.add_argument(
        "--migrate",
        action="store_true",
        help="upgrade a PostgreSQL schema that is behind before serving (safe when replicas "
        "start at once: they take turns); without it such a schema stops the start. SQLite is "
        "always upgraded",
    )
    serve.set_defaults(run=_serve)

    migrate = command("migrate", "create the database schema, or upgrade it to this version's")
    migrate.set_defaults(run=_migrate)


def _serve(args: argparse.Namespace) -> int:
    from service.logs import configure_logging
    from service.preflight import check_listen
    from service.server import run_server

    settings = _settings()
    check_listen(args.host, args.port)
    configure_logging(level=settings.LOG_LEVEL, fmt=settings.LOG_FORMAT)
    _before_serving(settings, migrate=args.migrate)
    return run_server(
        settings,
        host=args.host,
        port=args.port,
        workers=args.workers,
        ssl_certfile=args.ssl_certfile,
        ssl_keyfile=args.ssl_keyfile,
        log_level=settings.LOG_LEVEL,
    )


def _before_serving(settings: Settings, *, migrate: bool) -> None:
    """SQLite (any database with --migrate) is upgraded to head; a PostgreSQL schema that is
    not at head stops the start, saying what to run. Then a warning per empty security
    setting."""
    from service.preflight import (
        SERVE_MIGRATE,
        check_schema,
        check_url,
        security_warnings,
        upgrade,
    )
    from service.store import is_sqlite

    check_url(settings.DATABASE_URL)
    if migrate or is_sqlite(settings.DATABASE_URL):
        print_note(upgrade(settings.DATABASE_URL, on_wait=print_note).summary())
    else:
        asyncio.run(check_schema(settings.DATABASE_URL, hint=SERVE_MIGRATE))
    for warning in security_warnings(settings):
        print_warning(warning)


def alembic_config(database_url: str) -> Config:
    """Alembic's configuration for the packaged migrations, on `database_url`."""
    from service.store import alembic_config as config

    return config(database_url)


def migrate(database_url: str) -> Migration:
    """Upgrade the database at `database_url` to the newest schema (creating a SQLite file)."""
    from service.store import migrate as upgrade

    return upgrade(database_url)


def _migrate(_args: argparse.Namespace) -> int:
    from service.preflight import upgrade

    settings = _settings()
    print_line(upgrade(settings.DATABASE_URL, on_wait=print_note).summary())
    return 0


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (1-65535)")
    return port


def _positive_int(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return number
