"""What the CLI prints: one-line errors and warnings, and job views that fit 80 columns.

Rich picks the width from the terminal, else from COLUMNS, else 80 (a pipe), and drops colour
when the output is not a terminal. Text from the database is printed as `Text`, never as
markup: a path or an error message holding `[...]` is shown as it is.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from service.domain import cause_words, one_line_json

# Ids in tables show this many characters; `job` and `submit --resend` take any unique prefix.
SHORT_ID_LENGTH = 8
STATE_STYLES = {
    "submitted": "yellow",
    "accepted": "cyan",
    "succeeded": "green",
    "failed": "red",
    "expired": "magenta",
    "rejected": "red",
}
_JOB_FIELDS = (
    "method",
    "path",
    "tenant",
    "vismaJobId",
    "httpStatus",
    "createdResourceId",
    "resolvedBy",
    "submittedAt",
    "acceptedAt",
    "finishedAt",
)


def _stderr() -> Console:
    # soft_wrap: a long message stays one line for whoever reads stderr (a pipe, a log).
    return Console(stderr=True, soft_wrap=True, highlight=False)


def print_error(message: str) -> None:
    """`error: <message>` on stderr, one line."""
    _stderr().print(Text.assemble(("error:", "bold red"), " ", message))


def print_warning(message: str) -> None:
    """`warning: <message>` on stderr, one line."""
    _stderr().print(Text.assemble(("warning:", "bold yellow"), " ", message))


EVENT_FIELD_CHARS = 2000
"""What `job` shows of one nested timeline field; `--json` has it whole."""


def print_note(message: str) -> None:
    """A line on stderr about what a command did before its real output (say, a migration)."""
    _stderr().print(Text(message))


def print_line(message: str) -> None:
    """A line of a command's own output, on stdout."""
    Console(soft_wrap=True, highlight=False).print(Text(message))


def print_json(data: Any) -> None:
    """JSON for a program to read: plain, whatever the terminal."""
    print(json.dumps(data, indent=2))


def counted(count: int, one: str, many: str) -> str:
    """`1 delivery`, `2 deliveries`."""
    return f"{count} {one if count == 1 else many}"


def shortened(text: str, width: int) -> str:
    """`text` cut at a word to at most `width` characters, an ellipsis saying so."""
    return textwrap.shorten(text, width=width, placeholder=" …")


def short_id(value: str | None) -> str:
    return (value or "")[:SHORT_ID_LENGTH]


def _state(state: str) -> Text:
    return Text(state, style=STATE_STYLES.get(state, ""))


def _minutes(iso: str | None) -> str:
    """`2026-03-02T08:00:00.123Z` as `2026-03-02 08:00` (the times are UTC)."""
    if not iso:
        return ""
    return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M")


def _seconds(iso: str | None) -> str:
    if not iso:
        return ""
    return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M:%S")


def jobs_table(items: Sequence[Mapping[str, Any]], *, title: str) -> Table:
    """The job list: short ids, and only the path gives way when the terminal is narrow."""
    table = Table(
        title=title,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
    )
    # no_wrap keeps an id, a state or a header word whole; min_width keeps the column from
    # being squeezed below it while the path still has room to give.
    table.add_column("id", no_wrap=True, min_width=SHORT_ID_LENGTH)
    table.add_column("state", no_wrap=True, min_width=len("succeeded"))
    table.add_column("method", no_wrap=True, min_width=len("DELETE"))
    table.add_column("path", overflow="ellipsis", min_width=4)
    table.add_column("http", no_wrap=True, justify="right", min_width=4)
    table.add_column("submitted (UTC)", no_wrap=True, min_width=len("2026-03-02 08:00"))
    for item in items:
        table.add_row(
            short_id(item["id"]),
            _state(item["state"]),
            Text(item["method"]),
            Text(item["path"]),
            str(item["httpStatus"] or ""),
            _minutes(item["submittedAt"]),
        )
    return table


def print_jobs(items: Sequence[Mapping[str, Any]], *, first: int, total: int) -> None:
    """The job list as a table on stdout."""
    last = first + len(items) - 1
    title = f"jobs {first}-{last} of {total}" if items else f"no jobs here ({total} in all)"
    Console(highlight=False).print(jobs_table(items, title=title))


def print_job(data: Mapping[str, Any]) -> None:
    """One job: its fields, error and hint, then the timeline, one event per line.

    Full ids here (this is where one is copied from); a detail goes on lines of its own, so a
    wrapped line breaks between words, never inside an id.
    """
    console = Console(highlight=False)
    console.print(
        Text.assemble(("job ", "bold"), (data["id"], "bold"), "  ", _state(data["state"]))
    )
    for key in _JOB_FIELDS:
        if data.get(key) is not None:
            console.print(Text(f"  {key}: {data[key]}"))
    if data.get("tags"):
        tags = ", ".join(f"{k}={v}" for k, v in data["tags"].items())
        console.print(Text(f"  tags: {tags}"))
    if data.get("error"):
        error = data["error"]
        fault = f" (fault {error['faultCode']})" if error.get("faultCode") else ""
        console.print(Text.assemble("  ", ("error:", "red"), f" {error['message']}{fault}"))
    if data.get("hint"):
        console.print(Text.assemble("  ", ("hint:", "yellow"), f" {data['hint']}"))
    events = data.get("events", [])
    console.print(Text("timeline (UTC)", style="bold"))
    for event in events:
        console.print(Text(f"  {_seconds(event['at'])}  {event['kind']}  {event['source']}"))
        for key, value in (event.get("detail") or {}).items():
            # Bounded and without recursion, as the dashboard shows it: a field, not a dump.
            shown = (
                one_line_json(value, max_chars=EVENT_FIELD_CHARS)
                if not isinstance(value, str)
                else value
            )
            # A URL stays on its line (the terminal may wrap it, a copy keeps it whole).
            console.print(Text(f"      {key}: {shown}"), soft_wrap="://" in shown)


def print_issues(items: Sequence[Mapping[str, Any]], *, first: int, total: int) -> None:
    """The issue list as a table on stdout."""
    last = first + len(items) - 1
    title = f"issues {first}-{last} of {total}" if items else f"no issues here ({total} in all)"
    table = Table(
        title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False
    )
    table.add_column("id", no_wrap=True, min_width=SHORT_ID_LENGTH)
    table.add_column("state", no_wrap=True)
    table.add_column("company", overflow="ellipsis", min_width=4)
    table.add_column("cause", no_wrap=True, min_width=len("failed: fault 12027"))
    table.add_column("where", overflow="ellipsis", min_width=4)
    table.add_column("jobs", no_wrap=True, justify="right")
    table.add_column("last seen (UTC)", no_wrap=True, min_width=len("2026-03-02 08:00"))
    for item in items:
        table.add_row(
            short_id(item["id"]),
            Text(item["state"]),
            Text(item["tenant"]),
            Text(issue_cause_text(item)),
            Text(f"{item['method']} {item['pathTemplate']}"),
            str(item["jobCount"]),
            _minutes(item["lastSeenAt"]),
        )
    Console(highlight=False).print(table)


def issue_cause_text(issue: Mapping[str, Any]) -> str:
    """`failed: fault 12027`, `rejected: HTTP 422`, `expired: no answer`."""
    cause = cause_words(issue)
    return f"{issue['kind']}: {cause}" if cause else str(issue["kind"])


def print_issue(data: Mapping[str, Any]) -> None:
    """One issue: its cause, counts, error and hint, then its latest jobs."""
    console = Console(highlight=False)
    console.print(Text.assemble(("issue ", "bold"), (data["id"], "bold"), "  ", data["state"]))
    console.print(Text(f"  company: {data['tenant']}"))
    console.print(Text(f"  cause: {issue_cause_text(data)}"))
    console.print(Text(f"  where: {data['method']} {data['pathTemplate']}"))
    console.print(Text(f"  jobs: {data['jobCount']}"))
    console.print(Text(f"  first seen: {_seconds(data['firstSeenAt'])}"))
    console.print(Text(f"  last seen: {_seconds(data['lastSeenAt'])}"))
    if data.get("message"):
        console.print(Text.assemble("  ", ("error:", "red"), f" {data['message']}"))
    if data.get("hint"):
        console.print(Text.assemble("  ", ("hint:", "yellow"), f" {data['hint']}"))
    if data.get("incident"):
        incident = data["incident"]
        console.print(Text(f"  during incident: {incident.get('name') or incident['id']}"))
    jobs = data.get("jobs") or {}
    items = jobs.get("items") or []
    if items:
        title = f"latest {len(items)} of {jobs.get('totalCount', len(items))} jobs"
        console.print(jobs_table(items, title=title))
