"""`visma-hooks`: serve, migrate, submit, jobs, job, simulate."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from service.settings import Settings, SettingsError, get_settings

if TYPE_CHECKING:
    from alembic.config import Config

REPO_ROOT = Path(__file__).resolve().parent.parent
STATE_STYLES = {
    "submitted": "yellow",
    "accepted": "cyan",
    "succeeded": "green",
    "failed": "red",
    "expired": "magenta",
    "rejected": "red",
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        result: int = args.run(args)
    except Exception as exc:  # one clear line for the terminal, not a traceback
        from service.domain import DomainError

        if isinstance(exc, DomainError | SettingsError):
            Console(stderr=True).print(f"[red]error:[/red] {exc.detail}", soft_wrap=True)
            return 1
        raise
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="visma-hooks", description=__doc__)
    commands = parser.add_subparsers(dest="command")

    serve = commands.add_parser("serve", help="run the receiver and its workers")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument("--ssl-certfile")
    serve.add_argument("--ssl-keyfile")
    serve.set_defaults(run=_serve)

    migrate = commands.add_parser("migrate", help="bring the database schema up to date")
    migrate.set_defaults(run=_migrate)

    submit = commands.add_parser("submit", help="send a request to Visma as a background job")
    submit.add_argument("--method", default="POST")
    submit.add_argument("--path", help="e.g. /v1/customer")
    submit.add_argument(
        "--resend",
        metavar="JOB",
        help="send JOB's request again as a new job (never done automatically: it may create "
        "the same thing twice)",
    )
    body = submit.add_mutually_exclusive_group()
    body.add_argument("--body", help="JSON text")
    body.add_argument("--body-file", type=Path, help="a file holding the JSON body")
    submit.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE")
    submit.add_argument("--if-match")
    submit.add_argument("--no-notify", action="store_true", help="ask Visma for no webhook")
    submit.add_argument("--json", action="store_true", help="print the job as JSON")
    submit.set_defaults(run=_submit)

    jobs = commands.add_parser("jobs", help="list jobs")
    jobs.add_argument("--state")
    jobs.add_argument("--visma-job-id")
    jobs.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE")
    jobs.add_argument("--page-size", default="50")
    jobs.add_argument("--page", default="1")
    jobs.add_argument("--json", action="store_true")
    jobs.set_defaults(run=_jobs)

    poll = commands.add_parser("poll", help="read the state of jobs whose poll is due")
    poll.add_argument("--loop", action="store_true", help="keep polling until interrupted")
    poll.add_argument("--interval", type=float, default=5.0, help="seconds between passes")
    poll.set_defaults(run=_poll)

    job = commands.add_parser("job", help="show one job and its timeline")
    job.add_argument("job_id")
    job.add_argument("--json", action="store_true")
    job.set_defaults(run=_job)

    demo = commands.add_parser(
        "demo", help="rehearse Visma's outcomes and failure modes against the simulator"
    )
    demo.add_argument("--timeout", type=float, default=30.0)
    demo.set_defaults(run=_demo)

    simulate = commands.add_parser("simulate", help="run the Visma.net simulator")
    simulate.add_argument("--host", default="127.0.0.1")
    simulate.add_argument("--port", type=int, default=8090)
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
    simulate.set_defaults(run=_simulate)
    return parser


def _serve(args: argparse.Namespace) -> int:
    from service.server import run_server

    return run_server(
        get_settings(),
        host=args.host,
        port=args.port,
        workers=args.workers,
        ssl_certfile=args.ssl_certfile,
        ssl_keyfile=args.ssl_keyfile,
    )


def alembic_config(database_url: str) -> Config:
    """Alembic's configuration for the migrations of this repository, on `database_url`."""
    from alembic.config import Config

    config = Config(str(REPO_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(REPO_ROOT / "migrations"))
    config.attributes["database_url"] = database_url
    config.attributes["configure_logging"] = False
    return config


def migrate(database_url: str) -> None:
    """Upgrade the database at `database_url` to the newest schema."""
    from alembic import command

    command.upgrade(alembic_config(database_url), "head")


def _migrate(_args: argparse.Namespace) -> int:
    settings = get_settings()
    migrate(settings.DATABASE_URL)
    Console().print(f"database is up to date: {_safe_url(settings.DATABASE_URL)}")
    return 0


def _submit(args: argparse.Namespace) -> int:
    from service.domain import parse_job_create

    if args.resend:
        data = asyncio.run(_resend_and_show(get_settings(), args.resend))
        _print_job(data, as_json=args.json)
        return 0 if data["state"] not in ("rejected", "failed") else 1
    if not args.path:
        Console(stderr=True).print("[red]error:[/red] --path is required (or --resend JOB)")
        return 2

    raw_body = args.body_file.read_text() if args.body_file else args.body
    request: dict[str, Any] = {
        "method": args.method,
        "path": args.path,
        "tags": _pairs(args.tag),
        "notify": not args.no_notify,
    }
    if raw_body is not None:
        try:
            request["body"] = json.loads(raw_body)
        except ValueError:
            Console(stderr=True).print("[red]error:[/red] --body is not valid JSON")
            return 2
    if args.if_match:
        request["ifMatch"] = args.if_match
    job_create = parse_job_create(json.dumps(request).encode())
    data = asyncio.run(_submit_and_show(get_settings(), job_create.to_request()))
    _print_job(data, as_json=args.json)
    return 0 if data["state"] not in ("rejected", "failed") else 1


async def _submit_and_show(settings: Settings, request: Any) -> dict[str, Any]:
    from service.app import submit_settings, visma_client
    from service.flows import submit_job

    engine, sessions = _open_db(settings)
    visma = visma_client(settings)
    try:
        job_id = await submit_job(
            sessions,
            visma,
            request,
            source="cli",
            settings=submit_settings(settings),
        )
        return await _load_job(sessions, job_id)
    finally:
        await visma.aclose()
        await engine.dispose()


async def _resend_and_show(settings: Settings, job_id: str) -> dict[str, Any]:
    from service.app import submit_settings, visma_client
    from service.domain import decode_id
    from service.flows import resend_job

    engine, sessions = _open_db(settings)
    visma = visma_client(settings)
    try:
        new_id = await resend_job(
            sessions,
            visma,
            decode_id(job_id),
            source="cli",
            settings=submit_settings(settings),
        )
        return await _load_job(sessions, new_id)
    finally:
        await visma.aclose()
        await engine.dispose()


def _poll(args: argparse.Namespace) -> int:
    settings = get_settings()

    async def poll() -> int:
        from service.app import resolve_settings, visma_client
        from service.workers import ResolverWorker

        engine, sessions = _open_db(settings)
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
    Console().print(f"read the state of {count} job(s)")
    return 0


def _jobs(args: argparse.Namespace) -> int:
    from service.domain import parse_job_query

    pairs = [("pageSize", args.page_size), ("pageNumber", args.page)]
    if args.state:
        pairs.append(("state", args.state))
    if args.visma_job_id:
        pairs.append(("vismaJobId", args.visma_job_id))
    pairs += [(f"tag.{k}", v) for k, v in _pairs(args.tag).items()]
    job_filter, page = parse_job_query(pairs)
    items, total = asyncio.run(_list(get_settings(), job_filter, page))
    if args.json:
        print(json.dumps({"items": items, "totalCount": total}, indent=2))
        return 0
    table = Table(title=f"jobs {page.offset + 1}-{page.offset + len(items)} of {total}")
    for column in ("id", "state", "method", "path", "vismaJobId", "httpStatus", "submittedAt"):
        # Ids are for copying: wrap them, never cut them short.
        table.add_column(column, overflow="fold")
    for item in items:
        style = STATE_STYLES.get(item["state"], "")
        table.add_row(
            item["id"],
            f"[{style}]{item['state']}[/{style}]",
            item["method"],
            item["path"],
            item["vismaJobId"] or "",
            str(item["httpStatus"] or ""),
            item["submittedAt"] or "",
        )
    Console().print(table)
    return 0


async def _list(settings: Settings, job_filter: Any, page: Any) -> tuple[list[dict[str, Any]], int]:
    from service import store
    from service.domain import job_json

    engine, sessions = _open_db(settings)
    try:
        async with sessions.begin() as session:
            jobs, total = await store.list_jobs(
                session,
                states=job_filter.states,
                visma_job_id=job_filter.visma_job_id,
                tags=job_filter.tags,
                limit=page.size,
                offset=page.offset,
            )
        return [job_json(job) for job in jobs], total
    finally:
        await engine.dispose()


def _job(args: argparse.Namespace) -> int:
    from service.domain import decode_id

    settings = get_settings()

    async def load() -> dict[str, Any]:
        engine, sessions = _open_db(settings)
        try:
            return await _load_job(sessions, decode_id(args.job_id))
        finally:
            await engine.dispose()

    _print_job(asyncio.run(load()), as_json=args.json)
    return 0


async def _load_job(sessions: Any, job_id: str) -> dict[str, Any]:
    from service import store
    from service.domain import NotFound, job_json

    async with sessions.begin() as session:
        job = await store.get_job(session, job_id)
        if job is None:
            raise NotFound(f"no job with id {job_id!r}")
        return job_json(job, await store.job_events(session, job_id))


def _print_job(data: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(data, indent=2))
        return
    console = Console()
    style = STATE_STYLES.get(data["state"], "")
    console.print(f"[bold]job {data['id']}[/bold]  [{style}]{data['state']}[/{style}]")
    for key in (
        "method",
        "path",
        "vismaJobId",
        "httpStatus",
        "createdResourceId",
        "resolvedBy",
        "submittedAt",
        "acceptedAt",
        "finishedAt",
    ):
        if data.get(key) is not None:
            console.print(f"  {key}: {data[key]}")
    if data.get("tags"):
        console.print(f"  tags: {', '.join(f'{k}={v}' for k, v in data['tags'].items())}")
    if data.get("error"):
        error = data["error"]
        fault = f" (fault {error['faultCode']})" if error.get("faultCode") else ""
        console.print(f"  [red]error:[/red] {error['message']}{fault}")
    if data.get("hint"):
        console.print(f"  [yellow]hint:[/yellow] {data['hint']}")
    events = Table(title="timeline")
    for column in ("at", "kind", "source", "detail"):
        events.add_column(column)
    for event in data.get("events", []):
        events.add_row(event["at"], event["kind"], event["source"], json.dumps(event["detail"]))
    console.print(events)


def _demo(args: argparse.Namespace) -> int:
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


def _rate(text: str) -> float:
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"a rate must be above 0, not {text}")
    return value


def _simulate(args: argparse.Namespace) -> int:
    import uvicorn

    from service.simulator import SimulatorConfig, create_simulator_app

    settings = get_settings()
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
    if settings.VISMA_TENANT_ID:
        config.tenant_id = settings.VISMA_TENANT_ID
    Console().print(
        f"simulating Visma.net on http://{args.host}:{args.port} "
        f"(client {config.client_id}, tenant {config.tenant_id}); "
        f"webhooks go to {config.webhook_url}"
    )
    if chaos:
        Console().print("chaos: " + ", ".join(f"{name}={value}" for name, value in chaos.items()))
    uvicorn.run(create_simulator_app(config), host=args.host, port=args.port, access_log=False)
    return 0


def _open_db(settings: Settings) -> Any:
    from service.store import create_engine, create_sessionmaker

    engine = create_engine(settings.DATABASE_URL)
    return engine, create_sessionmaker(engine)


def _pairs(items: list[str]) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--tag wants KEY=VALUE, got {item!r}")
        pairs[key] = value
    return pairs


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


if __name__ == "__main__":
    sys.exit(main())
