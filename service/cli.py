"""`visma-hooks`: receive Visma.net background-call webhooks and record how every job ended.

Settings come from the environment or `.env` (see `.env.example`). Every mistake in them, or in
the command line, is one line on stderr and exit status 2; `--debug` (or LOG_LEVEL=debug) adds
the traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from service.cli_issues import add_commands as add_issue_commands
from service.cli_support import load_settings as _settings
from service.cli_support import open_db as _open_db
from service.domain import METHODS, JobState, validate_key
from service.settings import Settings, get_settings
from service.terminal import (
    counted,
    print_error,
    print_job,
    print_jobs,
    print_json,
    print_line,
    print_note,
    print_warning,
)

if TYPE_CHECKING:
    from alembic.config import Config

    from service.store import Migration

JOB_STATES = tuple(state.value for state in JobState)
_DEBUG_HELP = "show the traceback behind an error (so does LOG_LEVEL=debug)"


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


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage mistake said in one line like every other error."""

    def error(self, message: str) -> NoReturn:
        print_error(f"{message} (see `{self.prog} --help`)")
        raise SystemExit(2)


class _HelpFormatter(argparse.HelpFormatter):
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


def _version() -> str:
    try:
        return version("visma-hooks")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="visma-hooks",
        description="Receive Visma.net background-call webhooks and record how every job ended.",
        epilog="Settings: the environment or .env (see .env.example). "
        "`visma-hooks COMMAND --help` tells more.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument("--debug", action="store_true", help=_DEBUG_HELP)
    common = _Parser(add_help=False)
    # SUPPRESS: a subcommand without --debug leaves the top-level flag's value alone.
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=_DEBUG_HELP)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = commands.add_parser(
            name,
            help=help_text,
            description=help_text[0].upper() + help_text[1:] + ".",
            parents=[common],
            formatter_class=_HelpFormatter,
        )
        return sub

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

    submit = command("submit", "send a request to Visma as a background job")
    submit.add_argument(
        "--method", default="POST", type=str.upper, choices=METHODS, help="HTTP method"
    )
    submit.add_argument("--path", help="ERP API path, e.g. /v1/customer (needed unless --resend)")
    submit.add_argument(
        "--resend",
        metavar="JOB",
        help="send JOB's request again as a new job: an id, or its first characters (never "
        "done automatically: it may create the same thing twice)",
    )
    body = submit.add_mutually_exclusive_group()
    body.add_argument("--body", metavar="JSON", help="the request body, as JSON text")
    body.add_argument(
        "--body-file", metavar="FILE", type=_text_file, help="a file holding the JSON body"
    )
    submit.add_argument(
        "--tag",
        action="append",
        default=[],
        type=_key_value,
        metavar="KEY=VALUE",
        help="a tag to find the job by; repeat for more",
    )
    submit.add_argument(
        "--if-match", metavar="ETAG", help="send If-Match: Visma answers 412 if the record changed"
    )
    submit.add_argument(
        "--no-notify", action="store_true", help="ask Visma for no webhook: the job is polled"
    )
    submit.add_argument(
        "--tenant",
        metavar="TENANT",
        help="the company (one of VISMA_TENANT_ID) to send it for; default: the first",
    )
    submit.add_argument(
        "--wait",
        action="store_true",
        help="wait until the job ends (a running service resolves it) and print the outcome; "
        f"exit status {EXIT_BY_STATE['failed']} failed, {EXIT_BY_STATE['rejected']} rejected, "
        f"{EXIT_BY_STATE['expired']} expired",
    )
    submit.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=WAIT_TIMEOUT_SECONDS,
        metavar="SECONDS",
        help=f"with --wait: give up after this long, exit status {WAIT_TIMED_OUT} "
        f"(default {WAIT_TIMEOUT_SECONDS:g})",
    )
    submit.add_argument(
        "--idempotency-key",
        metavar="KEY",
        help="make a retry safe: a repeat with the same KEY and request sends nothing and "
        "shows the job the first one made",
    )
    submit.add_argument(
        "--batch",
        metavar="FILE",
        type=Path,
        help="submit each line of FILE (JSON lines, one job a line, as POST /api/v1/jobs/batch "
        "takes it); a running service sends them as each company's budget allows",
    )
    submit.add_argument("--json", action="store_true", help="print the job as JSON")
    submit.set_defaults(run=_submit)

    jobs = command("jobs", "list jobs, newest first")
    jobs.add_argument(
        "--state",
        type=_states,
        metavar="STATE[,STATE]",
        help=f"only jobs in these states, of: {', '.join(JOB_STATES)}",
    )
    jobs.add_argument("--visma-job-id", metavar="ID", help="only the job Visma knows by ID")
    jobs.add_argument(
        "--tenant", metavar="TENANT[,TENANT]", help="only jobs of these companies (tenant ids)"
    )
    jobs.add_argument(
        "--tag",
        action="append",
        default=[],
        type=_key_value,
        metavar="KEY=VALUE",
        help="only jobs with this tag; repeat for more (all must match)",
    )
    jobs.add_argument("--page-size", default="50", metavar="N", help="jobs per page, at most 500")
    jobs.add_argument("--page", default="1", metavar="N", help="page number, from 1")
    jobs.add_argument("--json", action="store_true", help="print the page as JSON")
    jobs.set_defaults(run=_jobs)

    job = command("job", "show one job and its timeline")
    job.add_argument(
        "job_id",
        metavar="ID",
        help="the job's id, or its first characters (`jobs` shows 8): any unique prefix",
    )
    job.add_argument("--json", action="store_true", help="print the job as JSON")
    job.set_defaults(run=_job)
    add_issue_commands(command)

    poll = command("poll", "read from Visma the state of jobs whose poll is due")
    poll.add_argument("--loop", action="store_true", help="keep polling until interrupted")
    poll.add_argument("--interval", type=float, default=5.0, help="seconds between passes")
    poll.set_defaults(run=_poll)

    replay = command(
        "replay", "run stored webhook deliveries through correlation and resolution again"
    )
    which = replay.add_mutually_exclusive_group(required=True)
    which.add_argument("--id", metavar="ID", help="the delivery's id (see GET /api/v1/deliveries)")
    which.add_argument(
        "--since",
        metavar="TIME",
        type=_timestamp,
        help="every Visma delivery received at or after TIME (ISO 8601; UTC if no offset)",
    )
    replay.add_argument("--json", action="store_true", help="print what was replayed as JSON")
    replay.set_defaults(run=_replay)

    purge = command("purge", "remove now what retention allows (RETENTION_*_DAYS), per table")
    purge.add_argument(
        "--dry-run", action="store_true", help="count what would be removed; remove nothing"
    )
    purge.add_argument("--json", action="store_true", help="print the counts as JSON")
    purge.set_defaults(run=_purge)

    demo = command("demo", "rehearse Visma's outcomes and failure modes against the simulator")
    demo.add_argument(
        "--timeout", type=float, default=30.0, help="seconds every job has to reach its end"
    )
    demo.set_defaults(run=_demo)

    simulate = command("simulate", "run the Visma.net simulator")
    simulate.add_argument("--host", default="127.0.0.1", help="address to listen on")
    simulate.add_argument("--port", type=int, default=8090, help="port to listen on")
    simulate.add_argument(
        "--webhook-url",
        default="http://127.0.0.1:8000/webhooks/visma",
        help="where the simulated dispatcher delivers webhooks",
    )
    simulate.add_argument(
        "--webhook-secret", default=None, help="default: first of VISMA_WEBHOOK_SECRETS"
    )
    chaos = simulate.add_argument_group(
        "chaos", "Visma failure modes to rehearse (default none; change live: PUT /_sim/chaos)"
    )
    chaos.add_argument("--seed", type=int, help="seed every chaos decision: reproducible runs")
    chaos.add_argument(
        "--drop-webhooks", type=_share, metavar="SHARE", help="share of webhooks never sent"
    )
    chaos.add_argument(
        "--delay-webhooks", type=_seconds, metavar="SECONDS", help="hold each webhook this long"
    )
    chaos.add_argument(
        "--delay-jitter", type=_seconds, metavar="SECONDS", help="plus up to this long at random"
    )
    chaos.add_argument(
        "--duplicate-webhooks", type=_share, metavar="SHARE", help="share of webhooks sent twice"
    )
    chaos.add_argument(
        "--reorder-window",
        type=_seconds,
        metavar="SECONDS",
        help="hold webhooks up to this long and release them shuffled",
    )
    chaos.add_argument(
        "--rate-limit-share", type=_share, metavar="SHARE", help="share of API requests given 429"
    )
    chaos.add_argument(
        "--rate-limit", type=_rate, metavar="RPS", help="API requests per second before 429"
    )
    chaos.add_argument(
        "--rate-budget",
        type=_count,
        metavar="N",
        help="API requests per company per budget window before 429 (Visma's hourly budget)",
    )
    chaos.add_argument(
        "--rate-budget-window",
        type=_rate,
        metavar="SECONDS",
        help="the budget's window (default 3600; shorter to rehearse an hour in minutes)",
    )
    chaos.add_argument(
        "--server-error-share", type=_share, metavar="SHARE", help="share of API requests given 503"
    )
    chaos.add_argument(
        "--forget-after",
        type=_seconds,
        metavar="SECONDS",
        help="forget jobs this long after receipt: state 404, content 410",
    )
    chaos.add_argument(
        "--forgotten-state-status",
        type=int,
        choices=(404, 410),
        help="what the state of a forgotten job answers (default 404)",
    )
    chaos.add_argument(
        "--drop-accepts",
        type=_share,
        metavar="SHARE",
        help="share of background calls that run but whose 202 is lost",
    )
    simulate.add_argument(
        "--status-webhook-url",
        default=None,
        help="where the simulated status page sends its webhooks; default: this machine's "
        "/webhooks/status/<STATUS_WEBHOOK_TOKEN> on port 8000 when the token is set",
    )
    simulate.add_argument(
        "--send-event",
        action="append",
        metavar="EVENT_ID[:TENANT]",
        help="ask the simulator running at --host/--port to send this entity event (for the "
        "company TENANT, default its first), signed like every delivery, and exit; repeatable. "
        "The bodies are illustrative: Visma publishes no schema for them",
    )
    simulate.set_defaults(run=_simulate)
    return parser


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


def _submit(args: argparse.Namespace) -> int:
    from service.domain import parse_job_create

    wait = args.timeout if args.wait else None
    if args.batch is not None:
        return _submit_batch(args)
    if args.resend:
        data = asyncio.run(_resend_and_show(_settings(), args.resend, wait=wait))
        return _show_ended(data, as_json=args.json, wait=wait)
    if not args.path:
        print_error("--path is required (or --resend JOB, or --batch FILE)")
        return 2

    raw_body = args.body_file if args.body_file is not None else args.body
    request: dict[str, Any] = {
        "method": args.method,
        "path": args.path,
        "tags": dict(args.tag),
        "notify": not args.no_notify,
    }
    if raw_body is not None:
        try:
            request["body"] = json.loads(raw_body)
        except ValueError:
            print_error(f"{'--body-file' if args.body_file is not None else '--body'} is not JSON")
            return 2
    if args.if_match:
        request["ifMatch"] = args.if_match
    if args.tenant:
        request["tenant"] = args.tenant
    key = None if args.idempotency_key is None else validate_key(args.idempotency_key)
    job_create = parse_job_create(json.dumps(request).encode())
    data = asyncio.run(_submit_and_show(_settings(), job_create.to_request(), key=key, wait=wait))
    return _show_ended(data, as_json=args.json, wait=wait)


EXIT_BY_STATE = {"failed": 1, "rejected": 1, "expired": 3}
"""`submit`'s exit status for a job that did not succeed (0 otherwise)."""
WAIT_TIMED_OUT = 3
"""`submit --wait`'s exit status when the job had not ended within --timeout."""
WAIT_TIMEOUT_SECONDS = 300.0
WAIT_POLL_SECONDS = 0.5


def _show_ended(data: dict[str, Any], *, as_json: bool, wait: float | None) -> int:
    """Print the job; the exit status says how it ended (or that the wait ran out)."""
    from service.domain import TERMINAL_STATES

    _show_job(data, as_json=as_json)
    if wait is not None and data["state"] not in TERMINAL_STATES:
        print_error(
            f"job {data['id']} is still {data['state']} after --timeout {wait:g} s; "
            f"`visma-hooks job {data['id']}` shows it later"
        )
        return WAIT_TIMED_OUT
    return EXIT_BY_STATE.get(data["state"], 0)


async def _until_ended(sessions: Any, job_id: str, *, timeout: float) -> dict[str, Any]:
    """The job once it has ended, or as it stands when `timeout` has passed: the serving
    replicas resolve it; this only reads it. A line on stderr for each state it passes, and one
    when its due state read has gone unclaimed (no service is resolving it)."""
    from service.domain import TERMINAL_STATES

    deadline = asyncio.get_running_loop().time() + timeout
    shown, warned = None, False
    while True:
        data = await _load_job(sessions, job_id)
        left = deadline - asyncio.get_running_loop().time()
        if data["state"] in TERMINAL_STATES or left <= 0:
            return data
        if data["state"] != shown:
            shown = data["state"]
            print_note(
                f"job {data['id']} is {shown}; waiting for it to end (--timeout {timeout:g} s)"
            )
        if not warned and await _unclaimed(sessions, job_id):
            warned = True
            print_warning(
                f"nothing is resolving job {data['id']}: its state read was due "
                f"{UNCLAIMED_SECONDS:g} s ago and no service claimed it; is `visma-hooks serve` "
                "running on this database?"
            )
        await asyncio.sleep(min(WAIT_POLL_SECONDS, left))


UNCLAIMED_SECONDS = 30.0
"""A due state read left this long unclaimed means no service works on this database (the
resolver claims due work within a second or two, and pushes the time forward as its lease)."""


async def _unclaimed(sessions: Any, job_id: str) -> bool:
    from datetime import timedelta

    from service import store
    from service.flows import utcnow

    async with sessions.begin() as session:
        job = await store.get_job(session, job_id)
    due = None if job is None else job.next_check_at
    return due is not None and due < utcnow() - timedelta(seconds=UNCLAIMED_SECONDS)


async def _shown(sessions: Any, job_id: str, wait: float | None) -> dict[str, Any]:
    if wait is None:
        return await _load_job(sessions, job_id)
    return await _until_ended(sessions, job_id, timeout=wait)


async def _submit_and_show(
    settings: Settings, request: Any, *, key: str | None, wait: float | None
) -> dict[str, Any]:
    from service.app import submit_settings
    from service.flows import submit_job, submit_once

    engine, sessions = await _open_db(settings)
    visma = await _visma_with_budgets(settings, sessions)
    try:
        if key is None:
            job_id = await submit_job(
                sessions, visma, request, source="cli", settings=submit_settings(settings)
            )
        else:
            submitted = await submit_once(
                sessions, visma, request, key=key, source="cli", settings=submit_settings(settings)
            )
            if submitted.replayed:
                print_note(f"a repeat of idempotency key {key!r}: nothing was sent")
            job_id = submitted.job_id
        return await _shown(sessions, job_id, wait)
    finally:
        await visma.aclose()
        await engine.dispose()


def _submit_batch(args: argparse.Namespace) -> int:
    from rich.console import Console

    from service.batch_file import print_summary, submit_file

    settings = _settings()
    if not args.batch.is_file():
        print_error(f"--batch {args.batch}: no such file")
        return 2
    console = Console(stderr=args.json)

    async def run() -> Any:
        from service.app import visma_client

        engine, sessions = await _open_db(settings)
        visma = visma_client(settings)
        try:
            return await submit_file(
                sessions, visma, args.batch, batch_size=settings.MAX_BATCH_JOBS, console=console
            )
        finally:
            await visma.aclose()
            await engine.dispose()

    summary = asyncio.run(run())
    if args.json:
        print_json(summary.as_json())
    else:
        print_summary(summary, console)
    return 1 if summary.refused else 0


async def _resend_and_show(
    settings: Settings, job_id: str, *, wait: float | None
) -> dict[str, Any]:
    from service.app import submit_settings
    from service.flows import find_job_id, resend_job

    engine, sessions = await _open_db(settings)
    visma = await _visma_with_budgets(settings, sessions)
    try:
        new_id = await resend_job(
            sessions,
            visma,
            await find_job_id(sessions, job_id),
            source="cli",
            settings=submit_settings(settings),
        )
        return await _shown(sessions, new_id, wait)
    finally:
        await visma.aclose()
        await engine.dispose()


def _poll(args: argparse.Namespace) -> int:
    settings = _settings()

    async def poll() -> int:
        from service.app import resolve_settings, visma_client
        from service.workers import ResolverWorker

        engine, sessions = await _open_db(settings)
        visma = visma_client(settings)
        worker = ResolverWorker(
            sessions, visma, resolve_settings(settings), idle_seconds=args.interval
        )
        try:
            if args.loop:
                await worker.run_forever()
            return await worker.run_once()
        finally:
            await visma.aclose()
            await engine.dispose()

    try:
        count = asyncio.run(poll())
    except KeyboardInterrupt:
        return 0
    print_line(f"read the state of {count} job(s)")
    return 0


def _replay(args: argparse.Namespace) -> int:
    from service.app import resolve_settings, visma_client
    from service.flows import replay_delivery, replay_since

    settings = _settings()

    async def run() -> list[Any]:
        engine, sessions = await _open_db(settings)
        visma = visma_client(settings)
        try:
            if args.id is not None:
                one = await replay_delivery(
                    sessions, visma, args.id, settings=resolve_settings(settings), source="cli"
                )
                return [one]
            return await replay_since(
                sessions, visma, args.since, settings=resolve_settings(settings), source="cli"
            )
        finally:
            await visma.aclose()
            await engine.dispose()

    done = asyncio.run(run())
    rows = [
        {"deliveryId": r.delivery_id, "jobId": r.job_id, "stateRead": r.state_read} for r in done
    ]
    if args.json:
        print_json({"replayed": rows})
        return 0
    for row in rows:
        job = row["jobId"] or "no job"
        read = ", state read again" if row["stateRead"] else ""
        print_line(f"replayed {row['deliveryId']}: {job}{read}")
    print_line(f"replayed {counted(len(rows), 'delivery', 'deliveries')}")
    return 0


def _timestamp(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"wants an ISO 8601 time, got {text!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _purge(args: argparse.Namespace) -> int:
    from service.app import retention
    from service.flows import PurgeSettings, purge

    settings = _settings()

    async def run() -> dict[str, int]:
        engine, sessions = await _open_db(settings)
        try:
            return await purge(sessions, retention(settings), PurgeSettings(), dry_run=args.dry_run)
        finally:
            await engine.dispose()

    counts = asyncio.run(run())
    if args.json:
        print_json({"dryRun": args.dry_run, "rows": counts})
        return 0
    verb = "would remove" if args.dry_run else "removed"
    for table, count in counts.items():
        print_line(f"{verb} {counted(count, PURGED_ONE.get(table, table), table)}")
    return 0


PURGED_ONE = {
    "deliveries": "delivery",
    "jobs": "job",
    "status history": "status history entry",
    "alerts": "alert",
    "purged notification ids": "purged notification id",
    "idempotency keys": "idempotency key",
    "dashboard sessions": "dashboard session",
}
"""Each purged table's name for one row (`removed 1 job`)."""


def _jobs(args: argparse.Namespace) -> int:
    from service.domain import parse_job_query

    pairs = [("pageSize", args.page_size), ("pageNumber", args.page)]
    if args.state:
        pairs.append(("state", args.state))
    if args.visma_job_id:
        pairs.append(("vismaJobId", args.visma_job_id))
    if args.tenant:
        pairs.append(("tenant", args.tenant))
    pairs += [(f"tag.{k}", v) for k, v in args.tag]
    job_filter, page = parse_job_query(pairs)
    items, total = asyncio.run(_list(_settings(), job_filter, page))
    if args.json:
        print_json({"items": items, "totalCount": total})
    else:
        print_jobs(items, first=page.offset + 1, total=total)
    return 0


async def _list(settings: Settings, job_filter: Any, page: Any) -> tuple[list[dict[str, Any]], int]:
    from service import store
    from service.domain import job_json

    engine, sessions = await _open_db(settings)
    try:
        async with sessions.begin() as session:
            jobs, total = await store.list_jobs(
                session,
                states=job_filter.states,
                visma_job_id=job_filter.visma_job_id,
                tags=job_filter.tags,
                tenants=job_filter.tenants,
                default_tenant=settings.default_tenant,
                limit=page.size,
                offset=page.offset,
            )
        default = settings.default_tenant
        return [job_json(job, default_tenant=default) for job in jobs], total
    finally:
        await engine.dispose()


def _job(args: argparse.Namespace) -> int:
    from service.flows import find_job_id

    settings = _settings()

    async def load() -> dict[str, Any]:
        engine, sessions = await _open_db(settings)
        try:
            return await _load_job(sessions, await find_job_id(sessions, args.job_id))
        finally:
            await engine.dispose()

    _show_job(asyncio.run(load()), as_json=args.json)
    return 0


async def _load_job(sessions: Any, job_id: str) -> dict[str, Any]:
    from service import store
    from service.domain import NotFound, job_json

    async with sessions.begin() as session:
        job = await store.get_job(session, job_id)
        if job is None:
            raise NotFound(f"no job with id {job_id!r}")
        events = await store.job_events(session, job_id)
        return job_json(job, events, default_tenant=_settings().default_tenant)


def _show_job(data: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        print_json(data)
    else:
        print_job(data)


def _demo(args: argparse.Namespace) -> int:
    from rich.console import Console

    from service.demo import run_demo

    return 0 if asyncio.run(run_demo(Console(), timeout=args.timeout)) else 1


# `simulate` flag (argparse dest) -> SimulatorConfig chaos field.
_CHAOS_FLAGS = {
    "seed": "seed",
    "drop_webhooks": "webhook_drop_share",
    "delay_webhooks": "webhook_delay_seconds",
    "delay_jitter": "webhook_delay_jitter_seconds",
    "duplicate_webhooks": "webhook_duplicate_share",
    "reorder_window": "webhook_reorder_window_seconds",
    "rate_limit_share": "rate_limit_share",
    "rate_limit": "rate_limit_per_second",
    "rate_budget": "rate_budget",
    "rate_budget_window": "rate_budget_window_seconds",
    "server_error_share": "server_error_share",
    "forget_after": "forget_after_seconds",
    "forgotten_state_status": "forgotten_state_status",
    "drop_accepts": "accept_drop_share",
}


def _number(text: str) -> float:
    value = float(text)  # argparse turns the ValueError into "invalid ... value"
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def _share(text: str) -> float:
    value = _number(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"a share is from 0 to 1, not {text}")
    return value


def _seconds(text: str) -> float:
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"seconds must not be negative, not {text}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"a count must not be negative, not {text}")
    return value


def _rate(text: str) -> float:
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"a rate must be above 0, not {text}")
    return value


def _send_events(args: argparse.Namespace) -> int:
    """`simulate --send-event`: each event sent by the running simulator's dispatcher."""
    import httpx
    from rich.console import Console

    console = Console()
    base = f"http://{args.host}:{args.port}"
    with httpx.Client(base_url=base, timeout=10) as client:
        for spec in args.send_event:
            event_id, _sep, tenant = spec.partition(":")
            payload = {"eventId": event_id.strip()}
            if tenant.strip():
                payload["tenant"] = tenant.strip()
            try:
                response = client.post("/_sim/events", json=payload)
            except httpx.HTTPError as exc:
                print_error(f"no simulator answers at {base} (start `visma-hooks simulate`): {exc}")
                return 1
            if response.status_code != 202:
                print_error(f"the simulator refused {spec!r}: {response.text[:300]}")
                return 2
            sent = response.json()
            console.print(
                f"sent {sent['eventId']} for {sent['tenant']} "
                f"(notification {sent['notificationId']})",
                markup=False,
                soft_wrap=True,  # the id stays whole, for a script to read
            )
    return 0


def _simulate(args: argparse.Namespace) -> int:
    import uvicorn
    from rich.console import Console

    from service.simulator import SimulatorConfig, create_simulator_app

    if args.send_event:
        return _send_events(args)

    settings = _settings()
    secret = args.webhook_secret or next(iter(settings.webhook_secrets()), None)
    chaos = {
        field: getattr(args, flag)
        for flag, field in _CHAOS_FLAGS.items()
        if getattr(args, flag) is not None
    }
    token = settings.STATUS_WEBHOOK_TOKEN.get_secret_value()
    status_url = args.status_webhook_url or (
        f"http://127.0.0.1:8000/webhooks/status/{token}" if token else None
    )
    config = SimulatorConfig(
        webhook_url=args.webhook_url or None, status_webhook_url=status_url, **chaos
    )
    if secret:
        config.webhook_secret = secret
    if settings.VISMA_CLIENT_ID:
        config.client_id = settings.VISMA_CLIENT_ID
    if settings.VISMA_CLIENT_SECRET.get_secret_value():
        config.client_secret = settings.VISMA_CLIENT_SECRET.get_secret_value()
    if settings.tenant_ids:
        config.tenant_id, *config.other_tenant_ids = settings.tenant_ids
    Console().print(
        f"simulating Visma.net on http://{args.host}:{args.port} "
        f"(client {config.client_id}, tenants {', '.join(config.tenants)}); "
        f"webhooks go to {config.webhook_url}"
    )
    if chaos:
        Console().print("chaos: " + ", ".join(f"{name}={value}" for name, value in chaos.items()))
    uvicorn.run(create_simulator_app(config), host=args.host, port=args.port, access_log=False)
    return 0


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"wants KEY=VALUE, got {text!r}")
    return key, value


def _states(text: str) -> str:
    for state in (s.strip() for s in text.split(",")):
        if state not in JOB_STATES:
            raise argparse.ArgumentTypeError(
                f"{state!r} is not a job state; the states are {', '.join(JOB_STATES)}"
            )
    return text


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


def _positive_seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds above 0")
    return seconds


async def _visma_with_budgets(settings: Settings, sessions: Any) -> Any:
    """The Visma client, its companies' budgets as the service last recorded them: a budget a
    replica knows is spent is not sent into (the job waits, and the service sends it)."""
    from service.app import visma_client
    from service.flows import restore_budgets

    visma = visma_client(settings)
    await restore_budgets(sessions, visma)
    return visma


def _text_file(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot read {path!r}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise argparse.ArgumentTypeError(f"{path!r} is not UTF-8 text") from None


if __name__ == "__main__":
    sys.exit(main())
