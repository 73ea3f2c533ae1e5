"""`visma-hooks submit`, `jobs` and `job`: send work to Visma, and see how it went."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.cli.support import Command
from service.cli.support import load_settings as _settings
from service.cli.support import open_db as _open_db
from service.domain import METHODS, JobState, validate_key
from service.settings import Settings
from service.terminal import (
    print_error,
    print_job,
    print_jobs,
    print_json,
    print_note,
    print_warning,
)

JOB_STATES = tuple(state.value for state in JobState)


def add_commands(command: Command, *, unclaimed_seconds: float) -> None:
    """`submit`, `jobs` and `job`, added to the CLI's parser by its `command` factory;
    `submit --wait` warns once a due state read has been left `unclaimed_seconds`."""
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
    submit.set_defaults(run=_submit, unclaimed_seconds=unclaimed_seconds)

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


def _submit(args: argparse.Namespace) -> int:
    from service.domain import parse_job_create

    wait = None if not args.wait else Wait(args.timeout, unclaimed_seconds=args.unclaimed_seconds)
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


@dataclass(frozen=True)
class Wait:
    """`submit --wait`: how long to wait for the job to end, and after how long an unclaimed
    state read means nothing is resolving it."""

    timeout: float
    unclaimed_seconds: float


def _show_ended(data: dict[str, Any], *, as_json: bool, wait: Wait | None) -> int:
    """Print the job; the exit status says how it ended (or that the wait ran out)."""
    from service.domain import TERMINAL_STATES

    _show_job(data, as_json=as_json)
    if wait is not None and data["state"] not in TERMINAL_STATES:
        print_error(
            f"job {data['id']} is still {data['state']} after --timeout {wait.timeout:g} s; "
            f"`visma-hooks job {data['id']}` shows it later"
        )
        return WAIT_TIMED_OUT
    return EXIT_BY_STATE.get(data["state"], 0)


async def _until_ended(sessions: Any, job_id: str, wait: Wait) -> dict[str, Any]:
    """The job once it has ended, or as it stands when `timeout` has passed: the serving
    replicas resolve it; this only reads it. A line on stderr for each state it passes, and one
    when its due state read has gone unclaimed (no service is resolving it)."""
    from service.domain import TERMINAL_STATES

    timeout = wait.timeout
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
        if not warned and await _unclaimed(sessions, job_id, wait.unclaimed_seconds):
            warned = True
            print_warning(
                f"nothing is resolving job {data['id']}: its state read was due "
                f"{wait.unclaimed_seconds:g} s ago and no service claimed it; "
                "is `visma-hooks serve` running on this database?"
            )
        await asyncio.sleep(min(WAIT_POLL_SECONDS, left))


async def _unclaimed(sessions: Any, job_id: str, unclaimed_seconds: float) -> bool:
    from datetime import timedelta

    from service import store
    from service.flows import utcnow

    async with sessions.begin() as session:
        job = await store.get_job(session, job_id)
    due = None if job is None else job.next_check_at
    return due is not None and due < utcnow() - timedelta(seconds=unclaimed_seconds)


async def _shown(sessions: Any, job_id: str, wait: Wait | None) -> dict[str, Any]:
    if wait is None:
        return await _load_job(sessions, job_id)
    return await _until_ended(sessions, job_id, wait)


async def _submit_and_show(
    settings: Settings, request: Any, *, key: str | None, wait: Wait | None
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


async def _resend_and_show(settings: Settings, job_id: str, *, wait: Wait | None) -> dict[str, Any]:
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
