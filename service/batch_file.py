"""`visma-hooks submit --batch FILE`: a file of jobs (JSON lines), stored as batches.

Each line is one job, as `POST /api/v1/jobs/batch` takes it (an optional `idempotencyKey`
makes the file safe to submit again: its jobs answer as repeats). The lines go in batches of
MAX_BATCH_JOBS, each one transaction; a running service sends them as each company's rate
budget allows. The summary names every refused line and why.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.text import Text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.domain import InvalidInput, ParsedItem, parse_item
from service.flows import BatchItem, submit_batch
from service.visma import VismaClient

MAX_LINE_BYTES = 1_048_576
"""Longest line read (MAX_SUBMIT_BYTES' default: one job's body)."""
MAX_LINES = 1_000_000
"""Most lines one file may hold (a bound on outside input; a night's work is far less)."""
SHOWN_REFUSALS = 50
"""Refused lines listed one by one; the rest are counted."""


@dataclass
class BatchSummary:
    """What a file's submission did, line by line."""

    created: int = 0
    repeated: int = 0
    refused: list[tuple[int, str]] = field(default_factory=list)
    """(line number, why) for each line refused."""

    def as_json(self) -> dict[str, Any]:
        return {
            "created": self.created,
            "repeated": self.repeated,
            "refused": [{"line": line, "reason": why} for line, why in self.refused],
        }


def read_lines(stream: IO[bytes]) -> Iterator[tuple[int, ParsedItem]]:
    """(line number, parsed job) for each non-empty line; a bad line is a refused item."""
    for number, line in enumerate(iter(lambda: stream.readline(MAX_LINE_BYTES + 1), b""), 1):
        if number > MAX_LINES:
            raise InvalidInput(f"the file holds more than {MAX_LINES} lines")
        if len(line) > MAX_LINE_BYTES:
            too_long = InvalidInput(f"the line is longer than {MAX_LINE_BYTES} bytes")
            yield number, ParsedItem(None, error=too_long)
            while line and not line.endswith(b"\n"):  # skip the rest of it
                line = stream.readline(MAX_LINE_BYTES + 1)
            continue
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except ValueError:
            yield number, ParsedItem(None, error=InvalidInput("the line is not JSON"))
            continue
        yield number, parse_item(data)


async def submit_file(
    sessions: async_sessionmaker[AsyncSession],
    visma: VismaClient,
    path: Path,
    *,
    batch_size: int,
    console: Console,
) -> BatchSummary:
    """Store the file's jobs, `batch_size` lines a transaction, with a progress bar."""
    summary = BatchSummary()
    total = _count_lines(path)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with path.open("rb") as stream, Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("submitting", total=total)
        pending: list[tuple[int, ParsedItem]] = []
        for numbered in read_lines(stream):
            pending.append(numbered)
            if len(pending) == batch_size:
                await _submit_some(sessions, visma, pending, summary)
                bar.update(task, completed=pending[-1][0])
                pending = []
        if pending:
            await _submit_some(sessions, visma, pending, summary)
        bar.update(task, completed=total)
    return summary


async def _submit_some(
    sessions: async_sessionmaker[AsyncSession],
    visma: VismaClient,
    lines: list[tuple[int, ParsedItem]],
    summary: BatchSummary,
) -> None:
    items = [BatchItem(item.request, key=item.key, error=item.error) for _, item in lines]
    for result in await submit_batch(sessions, visma, items, source="cli"):
        if result.status == 201:
            summary.created += 1
        elif result.status == 200:
            summary.repeated += 1
        else:
            why = result.error.detail if result.error is not None else f"status {result.status}"
            summary.refused.append((lines[result.index][0], why))


def _count_lines(path: Path) -> int:
    """Lines in the file (the progress bar's end), read in blocks: a line may be huge."""
    count, last = 0, b"\n"
    with path.open("rb") as stream:
        while block := stream.read(1 << 20):
            count += block.count(b"\n")
            last = block[-1:]
    return count + (last != b"\n")


def print_summary(summary: BatchSummary, console: Console) -> None:
    """The counts, then each refused line (up to SHOWN_REFUSALS) with its reason."""
    console.print(
        f"created {summary.created}, repeated {summary.repeated} (already made with their "
        f"idempotencyKey), refused {len(summary.refused)}"
    )
    for line, why in summary.refused[:SHOWN_REFUSALS]:
        console.print(Text(f"  line {line}: {why}"))
    if len(summary.refused) > SHOWN_REFUSALS:
        console.print(f"  ... and {len(summary.refused) - SHOWN_REFUSALS} more")
