"""`visma-hooks`: receive Visma.net background-call webhooks and record how every job ended.

Settings come from the environment or `.env` (see `.env.example`). Every mistake in them, or in
the command line, is one line on stderr and exit status 2; `--debug` (or LOG_LEVEL=debug) adds
the traceback.
"""

from __future__ import annotations

import argparse
import os
import traceback
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

from service.cli import issues, jobs, operations, serve, simulate
from service.cli.jobs import EXIT_BY_STATE, JOB_STATES, WAIT_TIMED_OUT
from service.cli.serve import alembic_config, migrate
from service.cli.support import HelpFormatter, Parser
from service.settings import get_settings
from service.terminal import print_error

__all__ = [
    "EXIT_BY_STATE",
    "JOB_STATES",
    "UNCLAIMED_SECONDS",
    "WAIT_TIMED_OUT",
    "alembic_config",
    "main",
    "migrate",
]

_DEBUG_HELP = "show the traceback behind an error (so does LOG_LEVEL=debug)"

UNCLAIMED_SECONDS = 30.0
"""A due state read left this long unclaimed means no service works on this database (the
resolver claims due work within a second or two, and pushes the time forward as its lease).
`submit --wait` says so; it gets the value through the parser, which reads it here when built."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        result: int = args.run(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        return _report(exc, debug=_wants_traceback(args))
    return result


def _report(exc: Exception, *, debug: bool) -> int:
    """One line for the terminal (the traceback too with --debug); the exit status."""
    from service.domain import DomainError, InvalidInput, NotConfigured
    from service.preflight import ConfigError

    if debug:
        traceback.print_exception(exc)
    if isinstance(exc, ConfigError):
        print_error(str(exc))
        return 2
    if isinstance(exc, InvalidInput | NotConfigured):
        print_error(exc.detail)  # what the command line or the settings asked for is wrong
        return 2
    if isinstance(exc, DomainError):
        print_error(exc.detail)
        return 1
    more = "" if debug else " (run again with --debug for the traceback)"
    print_error(f"{type(exc).__name__}: {exc}{more}")
    return 1


def _wants_traceback(args: argparse.Namespace) -> bool:
    from pydantic import ValidationError

    if getattr(args, "debug", False):
        return True
    try:
        return get_settings().LOG_LEVEL == "debug"
    except ValidationError:  # the settings are what is wrong: read the one that matters here
        return os.environ.get("LOG_LEVEL", "").strip().lower() == "debug"


def _version() -> str:
    try:
        return version("visma-hooks")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def _parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="visma-hooks",
        description="Receive Visma.net background-call webhooks and record how every job ended.",
        epilog="Settings: the environment or .env (see .env.example). "
        "`visma-hooks COMMAND --help` tells more.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument("--debug", action="store_true", help=_DEBUG_HELP)
    common = Parser(add_help=False)
    # SUPPRESS: a subcommand without --debug leaves the top-level flag's value alone.
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=_DEBUG_HELP)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = commands.add_parser(
            name,
            help=help_text,
            description=help_text[0].upper() + help_text[1:] + ".",
            parents=[common],
            formatter_class=HelpFormatter,
        )
        return sub

    # In this order: it is the order `--help` lists them in.
    serve.add_commands(command)
    jobs.add_commands(command, unclaimed_seconds=UNCLAIMED_SECONDS)
    issues.add_commands(command)
    operations.add_commands(command)
    simulate.add_commands(command)
    return parser
