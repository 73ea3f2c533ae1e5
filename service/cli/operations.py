"""`visma-hooks poll`, `replay` and `purge`: the service's work, run once from a terminal."""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime
from typing import Any

from service.cli.support import Command
from service.cli.support import load_settings as _settings
from service.cli.support import open_db as _open_db
from service.terminal import counted, print_json, print_line


def add_commands(command: Command) -> None:
    """`poll`, `replay` and `purge`, added to the CLI's parser by its `command` factory."""
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
