"""`visma-hooks issues`, `issue ID` and `resend --issue ID`: failures grouped by cause, seen
and re-sent from a terminal, straight on the database as the other commands are."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from typing import Any

from service.cli.support import Command, load_settings, open_db
from service.domain import ISSUE_STATES
from service.terminal import print_issue, print_issues, print_json, print_line


def add_commands(command: Command) -> None:
    """The issue commands, added to the CLI's parser by its `command` factory."""
    issues = command("issues", "list issues: failures grouped by cause, most recent first")
    issues.add_argument(
        "--state",
        metavar="STATE[,STATE]",
        help=f"only issues in these states, of: {', '.join(sorted(ISSUE_STATES))}",
    )
    issues.add_argument("--tenant", metavar="TENANT[,TENANT]", help="only these companies")
    issues.add_argument("--page-size", default="50", metavar="N", help="issues per page")
    issues.add_argument("--page", default="1", metavar="N", help="page number, from 1")
    issues.add_argument("--json", action="store_true", help="print the page as JSON")
    issues.set_defaults(run=_issues)

    issue = command("issue", "show one issue and its latest jobs")
    issue.add_argument("issue_id", metavar="ID", help="the issue's id")
    issue.add_argument("--json", action="store_true", help="print the issue as JSON")
    issue.set_defaults(run=_issue)

    resend = command(
        "resend", "send an issue's failed jobs again, as new jobs, once its cause is fixed"
    )
    resend.add_argument(
        "--issue", required=True, metavar="ID", help="the issue whose jobs to resend"
    )
    resend.add_argument(
        "--dry-run", action="store_true", help="only count (and list) the jobs it would resend"
    )
    resend.add_argument("--json", action="store_true", help="print the outcome as JSON")
    resend.set_defaults(run=_resend)


def _issues(args: argparse.Namespace) -> int:
    from service.domain import parse_issue_query

    pairs = [("pageSize", args.page_size), ("pageNumber", args.page)]
    if args.state:
        pairs.append(("state", args.state))
    if args.tenant:
        pairs.append(("tenant", args.tenant))
    issue_filter, page = parse_issue_query(pairs)

    async def load(session: Any) -> tuple[list[dict[str, Any]], int]:
        from service import store
        from service.domain import issue_json

        rows, total = await store.list_issues(
            session,
            states=issue_filter.states,
            tenants=issue_filter.tenants,
            limit=page.size,
            offset=page.offset,
        )
        incidents = await store.incidents_by_id(session, [i.incident_id or "" for i in rows])
        return [issue_json(i, incident=incidents.get(i.incident_id or "")) for i in rows], total

    items, total = asyncio.run(_in_transaction(load))
    if args.json:
        print_json({"items": items, "totalCount": total})
    else:
        print_issues(items, first=page.offset + 1, total=total)
    return 0


def _issue(args: argparse.Namespace) -> int:
    async def load(session: Any) -> dict[str, Any]:
        from service import store
        from service.domain import NotFound, issue_json, job_json

        issue = await store.get_issue(session, args.issue_id)
        if issue is None:
            raise NotFound(f"no issue with id {args.issue_id!r}")
        incidents = await store.incidents_by_id(session, [issue.incident_id or ""])
        jobs, total = await store.list_jobs(session, issue_id=issue.id, limit=20, offset=0)
        data = issue_json(issue, incident=incidents.get(issue.incident_id or ""))
        data["jobs"] = {"items": [job_json(j) for j in jobs], "totalCount": total}
        return data

    data = asyncio.run(_in_transaction(load))
    if args.json:
        print_json(data)
    else:
        print_issue(data)
    return 0


def _resend(args: argparse.Namespace) -> int:
    from service.domain import MAX_PREVIEW_JOBS, operation_json

    if args.dry_run:

        async def count(session: Any) -> tuple[int, list[str]]:
            from service.flows import preview_resend

            return await preview_resend(session, args.issue, limit=MAX_PREVIEW_JOBS)

        total, ids = asyncio.run(_in_transaction(count))
        if args.json:
            print_json({"issueId": args.issue, "count": total, "jobIds": ids})
        else:
            print_line(f"{total} job(s) of issue {args.issue} would be resent")
            for job_id in ids:
                print_line(f"  {job_id}")
        return 0
    operation = asyncio.run(_run_resend(args.issue, quiet=args.json))
    if args.json:
        print_json(operation_json(operation))
    else:
        print_line(
            f"operation {operation.id}: {operation.state}, {operation.done} of "
            f"{operation.total} job(s) resent; each is sent as its company's rate budget allows"
        )
    return 0 if operation.failed == 0 else 1


async def _run_resend(issue_id: str, *, quiet: bool) -> Any:
    """Start the resend and run it here, with a progress bar (the new jobs are written now;
    a serving replica sends them as each company's budget allows)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from service.app import operation_run, visma_client
    from service.flows import run_next_operation, start_resend

    settings = load_settings()
    engine, sessions = await open_db(settings)
    visma = visma_client(settings)
    try:
        async with sessions.begin() as session:
            operation = await start_resend(session, issue_id)
            operation_id, total = str(operation.id), operation.total
        columns = (TextColumn("resending"), BarColumn(), MofNCompleteColumn())
        console = Console(stderr=True, quiet=quiet)
        with Progress(*columns, console=console, transient=True) as bar:
            task = bar.add_task("resending", total=total)
            await run_next_operation(
                sessions,
                visma,
                operation_run(settings),
                operation_id=operation_id,
                on_step=lambda progress: bar.update(task, completed=progress.done),
            )
        async with sessions.begin() as session:
            from service import store

            return await store.get_operation(session, operation_id)
    finally:
        await visma.aclose()
        await engine.dispose()


async def _in_transaction(work: Callable[[Any], Any]) -> Any:

    engine, sessions = await open_db(load_settings())
    try:
        async with sessions.begin() as session:
            return await work(session)
    finally:
        await engine.dispose()
