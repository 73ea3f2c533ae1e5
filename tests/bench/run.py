"""`make bench`: webhook ingest with durable acks against the bare framework, in one run.

Starts the bare Starlette endpoint and `visma-hooks serve` (SQLite, then PostgreSQL, then
PostgreSQL with two workers) one after another on this machine, drives each with the same wrk
load of signed deliveries (a notification id of its own per request, each naming one of 10,000
finished jobs, so the whole correlation path runs), and prints req/s, p50/p99, the ratio to the
bare endpoint, 2xx answers against rows stored, and peak RSS. The bare endpoint is measured
before and after each service load, and each load's ratio uses the mean of the two around it:
this machine's speed drifts by a third within minutes, so a bare figure from another part of
the run would measure the drift. Then it fills `jobs` with 1,000,000 rows and times the
filtered job list and the poller's due-work query; with 10,000 issues beside them (each with
the failed, expired and rejected jobs dealt to it), the issue list and one issue with its jobs.
Then what recording an outcome costs: a failure (counted on its issue) beside a success, and
beside the same failure with the issue step left out.

Beside the main load (no routes), a load of routed entity events (`events.py`, `--no-routed`
skips it): each delivery is forwarded through the outbox to a loopback target, and the run
reports how long after the load the target had every acknowledged one (any missing fails it).

    python -m tests.bench.run [--seconds 10] [--connections 64] [--databases sqlite,postgresql]
                              [--traced]

With `--traced` each database's main load runs once more with tracing on (OTLP over HTTP to
a receiver on loopback, the SDK's batch span processor): every delivery is a span exported,
and that load's ratio is printed beside the untraced one's.

PostgreSQL: BENCH_DATABASE_URL (default postgresql://root@127.0.0.1:5432/bench); the database is
created if missing and its schema dropped and made anew: its name must contain "bench".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from service.settings import Settings
from tests.bench import databases, events, outcomes, procs, queries, submissions
from tests.bench.loadgen import (
    LoadResult,
    check_counts,
    make_deliveries,
    new_prefix,
    run_wrk,
    write_deliveries,
)
from tests.otlp_receiver import OtlpReceiver, receiver_thread

SECRET = "bench-webhook-secret"
API_TOKEN = "bench-api-token"
MATCHED_JOBS = 10_000
DISTINCT_BODIES = 4096
DEFAULT_POSTGRES = "postgresql://root@127.0.0.1:5432/bench"

# Targets of the ingest issue.
MIN_RATIO = 0.40
MAX_P99_MS = 50.0
MIN_WORKER_SCALING = 1.6
MAX_RSS_MB = 150.0
MAX_LIST_MS = 20.0
MAX_DUE_MS = 5.0
MAX_ISSUE_COST = 1.25
"""A failure recorded with its issue counted, against the same failure without: at most a
quarter more (one upsert beside the job's update, its event and its alert)."""
PURGE_MAX_COST = 0.9
"""The main load's ratio with a purge running beside it, against the same load without: the
medians of `--purge-repeats` runs of each, taken in turns (on these shared machines one run's
ratio swings by a quarter or more, ten times the purge's own share of the time)."""

BARE = "bare"
"""The label of the one-worker bare endpoint's runs."""


@dataclass
class Row:
    label: str
    database: str | None
    workers: int
    load: LoadResult
    stored: int | None = None
    peak_rss_mb: float = 0.0
    problems: list[str] = field(default_factory=list)
    matched: bool = True
    """The main load (each delivery names a job); False: the verify + insert variant."""
    open_jobs: bool = False
    """The named jobs are `accepted`: each webhook updates its job and makes a Visma read due."""
    cpu_us_per_request: float = 0.0
    """The server's own CPU time (user + system, all its processes) per answer, in us: steadier
    than req/s on a shared machine (a database server's CPU is not counted)."""
    bare_rps: float = 0.0
    """A service load's yardstick: the mean of the one-worker bare runs just before and after."""
    purged: int | None = None
    """With a purge running beside the load: the old rows it removed meanwhile."""
    traced: bool = False
    """Tracing on (OTLP to the loopback receiver); `spans`: how many it received."""
    spans: int | None = None
    forwarded: events.Forwarded | None = None
    """The routed-events load: what its target received, and how long after the load."""


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    dbs = [d.strip() for d in args.databases.split(",") if d.strip()]
    work = Path(tempfile.mkdtemp(prefix="visma-hooks-bench-"))
    postgres_url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_POSTGRES)
    urls = {"sqlite": f"sqlite:///{work / 'bench.db'}", "postgresql": postgres_url}
    _header(args, urls, dbs)

    job_ids = [str(uuid.uuid4()) for _ in range(MATCHED_JOBS)]
    requests_file = work / "deliveries.tsv"
    write_deliveries(requests_file, make_deliveries(SECRET, job_ids, DISTINCT_BODIES))
    # The second variant: no `vh-job-id`, so no job to correlate (verify + insert only).
    unmatched_file = work / "deliveries-no-job.tsv"
    write_deliveries(unmatched_file, make_deliveries(SECRET, [], DISTINCT_BODIES))
    # The routed-events load: entity events the service forwards to a loopback target.
    events_file = work / "deliveries-events.tsv"
    write_deliveries(events_file, events.make_event_deliveries(SECRET, DISTINCT_BODIES))
    env = {"VISMA_WEBHOOK_SECRETS": SECRET, "API_TOKENS": API_TOKEN}
    if args.connections > Settings.model_fields["MAX_CONNECTIONS_PER_CLIENT"].default:
        # Every load connection comes from 127.0.0.1: past the per-address cap the extra ones
        # would be refused (429) and measure nothing. The cap is raised for this run only.
        env["MAX_CONNECTIONS_PER_CLIENT"] = str(args.connections + 16)

    def drive(
        server: procs.Server, label: str, deliveries_file: Path = requests_file
    ) -> tuple[LoadResult, str]:
        run_wrk(
            server.url,
            deliveries_file=deliveries_file,
            prefix=new_prefix("warm"),
            connections=args.connections,
            seconds=args.warmup,
            threads=args.threads,
        )
        prefix = new_prefix(label)
        cpu_before = server.cpu_seconds()
        load = run_wrk(
            server.url,
            deliveries_file=deliveries_file,
            prefix=prefix,
            connections=args.connections,
            seconds=args.seconds,
            threads=args.threads,
        )
        load.cpu_seconds = server.cpu_seconds() - cpu_before
        return load, prefix

    def bare(workers: int, label: str) -> Row:
        with procs.bare(workers=workers) as server:
            load, _ = drive(server, "bare")
            row = Row(label, None, workers, load, peak_rss_mb=server.peak_rss_mb())
            row.cpu_us_per_request = _cpu_us(load)
        _print_row(row)
        return row

    def service(
        database: str,
        workers: int,
        *,
        matched: bool = True,
        open_jobs: bool = False,
        purge_rows: int = 0,
        again: bool = False,
        receiver: OtlpReceiver | None = None,
    ) -> Row:
        url = urls[database]
        databases.reset(url)
        databases.seed_jobs(url, job_ids, state="accepted" if open_jobs else "succeeded")
        label = f"service {database}" + (f" x{workers} workers" if workers > 1 else "")
        label += "" if matched else ", no job"
        label += ", open jobs" if open_jobs else ""
        label += " (again)" if again else ""
        label += ", traced" if receiver else ""
        deliveries_file = requests_file if matched else unmatched_file
        service_env = dict(env)
        if receiver is not None:
            # The SDK's defaults otherwise: batch span processor, parent-based always-on.
            service_env["OTEL_EXPORTER_OTLP_ENDPOINT"] = receiver.endpoint
            spans_before = receiver.received
        if purge_rows:
            # Rows past retention: housekeeping starts purging them as the service starts, and
            # with that many it goes on through the warm-up and the load.
            seconds = databases.seed_old_deliveries(url, purge_rows)
            print(f"  ({purge_rows:,} old deliveries seeded in {seconds:.0f} s)")
            label += f", purging {purge_rows:,} old rows"
        with procs.service(url, workers=workers, env=service_env) as server:
            old_before = databases.count_old_deliveries(url) if purge_rows else 0
            load, prefix = drive(server, database, deliveries_file)
            time.sleep(1.0)  # let requests still in flight when wrk stopped finish
            purged = old_before - databases.count_old_deliveries(url) if purge_rows else None
            rss = server.peak_rss_mb()
            stored = databases.count_deliveries(url, prefix)
            problems = check_counts(load, stored)
            linked = databases.count_deliveries(url, prefix, linked=True)
            if matched and linked != stored:  # else the load measured another path
                problems.append(f"{stored - linked} of {stored} deliveries not linked to a job")
            row = Row(label, database, workers, load, stored, rss, problems, matched, open_jobs)
            row.cpu_us_per_request = _cpu_us(load)
            row.purged = purged
            if receiver is not None:
                row.traced = True
                row.spans = receiver.received - spans_before
                if not row.spans:
                    row.problems.append("tracing on, but the receiver got no spans")
            if purge_rows and not purged:
                row.problems.append("the purge removed nothing during the load")
            if load.not_ok or row.problems:
                print(server.log_tail(), file=sys.stderr)
        _print_row(row)
        return row

    def routed(database: str) -> Row:
        url = urls[database]
        databases.reset(url)
        label = f"service {database}, routed events"
        with events.sink() as target:
            service_env = {**env, **events.routes_env(target.url)}
            with procs.service(url, workers=1, env=service_env) as server:
                # Warmed up with the main load's deliveries (not routed: no forwards), then
                # a shorter run than the others: the outbox drains well below ingest rates.
                run_wrk(
                    server.url,
                    deliveries_file=unmatched_file,
                    prefix=new_prefix("warm"),
                    connections=args.connections,
                    seconds=args.warmup,
                    threads=args.threads,
                )
                prefix = new_prefix(database)
                cpu_before = server.cpu_seconds()
                load = run_wrk(
                    server.url,
                    deliveries_file=events_file,
                    prefix=prefix,
                    connections=args.connections,
                    seconds=args.routed_seconds,
                    threads=args.threads,
                    event_id=events.ROUTED_EVENT,
                )
                load.cpu_seconds = server.cpu_seconds() - cpu_before
                time.sleep(1.0)  # let requests still in flight when wrk stopped finish
                stored = databases.count_deliveries(url, prefix)
                problems = check_counts(load, stored)
                forwarded = events.wait_forwarded(
                    target.url, prefix, stored, timeout=args.forward_timeout
                )
                rss = server.peak_rss_mb()
                if forwarded.received < stored:
                    problems.append(
                        f"{stored - forwarded.received} of {stored} stored events not forwarded"
                        f" within {args.forward_timeout:.0f} s"
                    )
                if load.not_ok or problems:
                    print(server.log_tail(), file=sys.stderr)
        row = Row(label, database, 1, load, stored, rss, problems, matched=False)
        row.cpu_us_per_request = _cpu_us(load)
        row.forwarded = forwarded
        _print_row(row)
        return row

    _print_columns()
    rows: list[Row] = []
    with (
        procs.simulator(webhook_secret=SECRET) as visma,
        receiver_thread() as receiver,
    ):
        # The simulator answers the state reads that webhooks for open jobs make due (404:
        # it never ran these seeded jobs; a young job's 404 is retried later, as from Visma).
        env.update(
            VISMA_API_URL=visma.url,
            VISMA_TOKEN_URL=f"{visma.url}/connect/token",
            VISMA_CLIENT_ID="sim-client",
            VISMA_CLIENT_SECRET="sim-secret",
            VISMA_TENANT_ID="sim-tenant",
        )
        # database, workers, matched, open jobs, old rows purged beside the load, a repeat,
        # traced
        loads: list[tuple[str, int, bool, bool, int, bool, bool]] = []
        for database in dbs:
            loads.append((database, 1, True, False, 0, False, False))
            if args.traced:  # right after the untraced main load: the A/B in one run
                loads.append((database, 1, True, False, 0, False, True))
            if args.purge_rows:
                for repeat in range(args.purge_repeats):
                    if repeat:  # the main load again, in turn with the purge's
                        loads.append((database, 1, True, False, 0, True, False))
                    loads.append((database, 1, True, False, args.purge_rows, bool(repeat), False))
            if args.unmatched:
                loads.append((database, 1, False, False, 0, False, False))
            if args.open_jobs:
                loads.append((database, 1, True, True, 0, False, False))
        if "postgresql" in dbs and args.two_workers:
            loads.append(("postgresql", 2, True, False, 0, False, False))
        rows.append(bare(1, BARE))
        routed_loads = dbs if args.routed else []
        for database, workers, matched, open_jobs, purge_rows, again, traced in loads:
            rows.append(
                service(
                    database,
                    workers,
                    matched=matched,
                    open_jobs=open_jobs,
                    purge_rows=purge_rows,
                    again=again,
                    receiver=receiver if traced else None,
                )
            )
            if workers > 1:
                rows.append(bare(workers, f"bare x{workers} workers"))
            rows.append(bare(1, BARE))
        for database in routed_loads:
            rows.append(routed(database))
            rows.append(bare(1, BARE))

    _bracket_with_bare(rows)
    bare_rps = statistics.mean(r.load.rps for r in rows if r.label == BARE)
    bare_runs = sum(r.label == BARE for r in rows)
    print(f"\nbare endpoint, mean of its {bare_runs} runs: {bare_rps:,.0f} req/s")
    for row in rows:
        if row.database is not None and row.workers == 1:
            print(
                f"  {row.label:<32} {row.load.rps / row.bare_rps:.2f} of the bare runs around it"
                f" ({row.bare_rps:,.0f} req/s)"
            )
    for line in _traced_lines(rows):
        print(line)
    verdicts = _ingest_verdicts(rows)

    timings: dict[str, list[queries.Timing]] = {}
    plans: dict[str, str] = {}
    if args.jobs:
        for database in dbs:
            url = urls[database]
            print(f"\n== {database}: {args.jobs:,} jobs")
            databases.reset(url)
            seconds = queries.seed_million(url, args.jobs)
            print(f"seeded in {seconds:.1f} s")
            settings = Settings(_env_file=None, DATABASE_URL=url, API_TOKENS=API_TOKEN)  # type: ignore[call-arg]
            timings[database] = asyncio.run(queries.time_queries(settings))
            for t in timings[database]:
                print(
                    f"  {t.what:<78} median {t.median_ms:7.2f} ms  p95 {t.p95_ms:7.2f} ms"
                    f"  ({t.detail})"
                )
            plans[database] = asyncio.run(queries.explain_due_work(settings))
            print("  due-work plan:\n    " + plans[database].replace("\n", "\n    "))
        verdicts += _query_verdicts(timings)

    recording: dict[str, outcomes.OutcomeTiming] = {}
    if args.outcomes:
        for database in dbs:
            url = urls[database]
            if not args.jobs:  # else on the database the query timings filled
                databases.reset(url)
            settings = Settings(_env_file=None, DATABASE_URL=url, API_TOKENS=API_TOKEN)  # type: ignore[call-arg]
            recording[database] = asyncio.run(outcomes.time_outcomes(settings))
            print(_outcome_line(database, recording[database]))
        verdicts += _outcome_verdicts(recording)

    submitting: dict[str, submissions.SubmissionTiming] = {}
    if args.submissions:
        for database in dbs:
            url = urls[database]
            databases.reset(url)
            settings = Settings(  # type: ignore[call-arg]
                _env_file=None,
                DATABASE_URL=url,
                API_TOKENS=API_TOKEN,
                VISMA_API_URL="http://127.0.0.1:9",  # never called: no worker sends
                VISMA_TOKEN_URL="http://127.0.0.1:9/connect/token",
                VISMA_CLIENT_ID="bench",
                VISMA_CLIENT_SECRET="bench",
                VISMA_TENANT_ID="bench-company",
            )
            timing = asyncio.run(submissions.time_submissions(settings))
            submitting[database] = timing
            print(
                f"\n== {database}: a {submissions.BATCH_JOBS:,}-job batch written and answered,"
                f" median of {submissions.BATCH_RUNS}: {timing.batch_median_ms:,.0f} ms"
                f" (runs: {', '.join(f'{ms:,.0f}' for ms in timing.batch_runs_ms)});"
                f" a repeated Idempotency-Key answered: p50 {timing.repeat_p50_ms:.2f} ms,"
                f" p95 {timing.repeat_p95_ms:.2f} ms (a plain GET of the job: p50"
                f" {timing.get_p50_ms:.2f} ms)"
            )
            verdicts.append(
                (
                    timing.batch_median_ms < 1000,
                    f"{database}: a {submissions.BATCH_JOBS:,}-job batch answered in under 1 s"
                    f" ({timing.batch_median_ms:,.0f} ms)",
                )
            )
            verdicts.append(
                (
                    timing.repeat_p50_ms < 5,
                    f"{database}: a repeated key answered in under 5 ms at p50"
                    f" ({timing.repeat_p50_ms:.2f} ms)",
                )
            )

    print("\n== targets")
    for ok, text in verdicts:
        print(f"  {'ok  ' if ok else 'MISS'} {text}")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "machine": _machine(),
                    "args": vars(args),
                    "rows": [{**asdict(r), "rps": r.load.rps} for r in rows],
                    "bare_rps": bare_rps,
                    "timings": {k: [asdict(t) for t in v] for k, v in timings.items()},
                    "plans": plans,
                    "outcomes": {
                        k: {**asdict(v), "ratio": v.ratio, "issue_cost": v.issue_cost}
                        for k, v in recording.items()
                    },
                    "submissions": {k: asdict(v) for k, v in submitting.items()},
                    "verdicts": verdicts,
                },
                indent=2,
            )
        )
    # Stored-vs-acknowledged is a correctness check, not a target: it fails the run.
    return 1 if any(r.problems for r in rows) else 0


def _traced_lines(rows: list[Row]) -> list[str]:
    """Each traced load's ratio beside the untraced main load of the same database."""
    lines = []
    for row in rows:
        if not row.traced:
            continue
        plain = next(
            r
            for r in rows
            if r.database == row.database and r.workers == 1 and r.matched and not r.traced
        )
        traced_ratio = row.load.rps / row.bare_rps
        plain_ratio = plain.load.rps / plain.bare_rps
        lines.append(
            f"  {row.database}: traced {traced_ratio:.2f} of bare, untraced {plain_ratio:.2f}"
            f" ({traced_ratio / plain_ratio:.2f} of untraced; {row.spans:,} spans exported)"
        )
    return lines


def _bracket_with_bare(rows: list[Row]) -> None:
    """Give each service row the mean of the one-worker bare runs just before and after it."""
    for i, row in enumerate(rows):
        if row.database is None:
            continue
        before = next(r for r in reversed(rows[:i]) if r.label == BARE)
        after = next(r for r in rows[i + 1 :] if r.label == BARE)
        row.bare_rps = (before.load.rps + after.load.rps) / 2


def _purge_verdicts(rows: list[Row]) -> list[tuple[bool, str]]:
    """A purge beside the load costs at most a tenth of the main load's ratio."""
    verdicts = []
    for database in dict.fromkeys(r.database for r in rows if r.purged is not None):
        main_load = [
            r
            for r in rows
            if r.database == database
            and r.workers == 1
            and r.matched
            and not r.open_jobs
            and r.purged is None
        ]
        purging = [r for r in rows if r.database == database and r.purged is not None]
        with_purge = statistics.median(r.load.rps / r.bare_rps for r in purging)
        without = statistics.median(r.load.rps / r.bare_rps for r in main_load)
        verdicts.append(
            (
                with_purge >= PURGE_MAX_COST * without,
                f"{database}: {with_purge:.2f} of bare with a purge beside the load against "
                f"{without:.2f} without (medians of {len(purging)} and {len(main_load)} runs; "
                f"{with_purge / without:.0%}; >= {PURGE_MAX_COST:.0%})",
            )
        )
    return verdicts


def _ingest_verdicts(rows: list[Row]) -> list[tuple[bool, str]]:
    verdicts = _purge_verdicts(rows)
    for row in rows:
        if row.database is None:
            continue
        if row.forwarded is not None:
            # Reported beside the main load, not held to its targets: its sender and target
            # share the machine's two cores with it. What it must do is forward every one.
            verdicts.append(
                (
                    not row.problems,
                    f"{row.label}: {row.stored} stored, {row.forwarded.received} forwarded"
                    f" ({row.forwarded.drain_seconds:.1f} s after the load)"
                    + (f" ({'; '.join(row.problems)})" if row.problems else ""),
                )
            )
            continue
        if row.traced:
            pass  # reported beside the untraced load (`_traced_lines`), not a target
        elif row.workers == 1:
            ratio = row.load.rps / row.bare_rps
            text = f"{row.label}: {ratio:.2f} of the bare runs around it (>= 0.40)"
            verdicts.append((ratio >= MIN_RATIO, text))
            verdicts.append(
                (row.load.p99_ms < MAX_P99_MS, f"{row.label}: p99 {row.load.p99_ms:.1f} ms (< 50)")
            )
            verdicts.append(
                (
                    row.peak_rss_mb < MAX_RSS_MB,
                    f"{row.label}: peak RSS {row.peak_rss_mb:.0f} MB (< 150)",
                )
            )
        else:
            one = next(
                r
                for r in rows
                if r.database == row.database
                and r.workers == 1
                and (r.matched, r.open_jobs) == (row.matched, row.open_jobs)
                and not r.traced
            )
            scaling = row.load.rps / one.load.rps
            bare1 = row.bare_rps
            bare2 = next(
                (r.load.rps for r in rows if r.label == f"bare x{row.workers} workers"), 0.0
            )
            verdicts.append(
                (
                    scaling >= MIN_WORKER_SCALING,
                    f"{row.label}: {scaling:.2f}x one worker (>= 1.6; bare endpoint on this "
                    f"machine: {bare2 / bare1:.2f}x)",
                )
            )
        verdicts.append(
            (
                row.load.not_ok == 0 and row.load.socket_errors == 0,
                f"{row.label}: {row.load.not_ok} non-2xx, {row.load.socket_errors} socket errors",
            )
        )
        verdicts.append(
            (
                not row.problems,
                f"{row.label}: {row.load.ok} 2xx, {row.stored} stored"
                + (f" ({'; '.join(row.problems)})" if row.problems else ""),
            )
        )
    return verdicts


def _query_verdicts(timings: dict[str, list[queries.Timing]]) -> list[tuple[bool, str]]:
    verdicts = []
    for database, items in timings.items():
        for t in items:
            if t.what.startswith("claim_due_jobs in a transaction"):
                continue  # context beside the due-work query, which the target names
            limit = MAX_DUE_MS if t.what == queries.DUE_WORK_QUERY else MAX_LIST_MS
            verdicts.append(
                (t.median_ms < limit, f"{database}: {t.what}: {t.median_ms:.2f} ms (< {limit:.0f})")
            )
    return verdicts


def _outcome_line(database: str, t: outcomes.OutcomeTiming) -> str:
    return (
        f"\n== {database}: record_outcome, median of {t.runs} each (rolled back): succeeded"
        f" {t.succeeded_ms:.2f} ms, failed {t.failed_ms:.2f} ms (failed/succeeded"
        f" {t.ratio:.2f}); failed without the issue step {t.failed_without_issue_ms:.2f} ms"
        f" (with/without {t.issue_cost:.2f})"
    )


def _outcome_verdicts(recording: dict[str, outcomes.OutcomeTiming]) -> list[tuple[bool, str]]:
    return [
        (
            t.issue_cost <= MAX_ISSUE_COST,
            f"{database}: a failure recorded with its issue {t.failed_ms:.2f} ms against"
            f" {t.failed_without_issue_ms:.2f} ms without ({t.issue_cost:.2f}x; <="
            f" {MAX_ISSUE_COST:.2f}; a success {t.succeeded_ms:.2f} ms)",
        )
        for database, t in recording.items()
    ]


def _cpu_us(load: LoadResult) -> float:
    return load.cpu_seconds / load.responses * 1e6 if load.responses else 0.0


def _print_columns() -> None:
    print(
        f"\n{'':<34}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'2xx':>10}{'non-2xx':>9}"
        f"{'stored':>10}{'RSS MB':>8}{'CPU us/req':>11}"
    )


def _print_row(row: Row) -> None:
    load = row.load
    stored = "" if row.stored is None else f"{row.stored:,}"
    print(
        f"{row.label:<34}{load.rps:>9,.0f}{load.p50_ms:>9.1f}{load.p99_ms:>9.1f}"
        f"{load.ok:>10,}{load.not_ok + load.socket_errors:>9,}{stored:>10}"
        f"{row.peak_rss_mb:>8.0f}{row.cpu_us_per_request:>11.0f}",
        flush=True,
    )
    if row.purged is not None:
        print(f"    (housekeeping purged {row.purged:,} old rows during the load)", flush=True)
    if row.forwarded is not None:
        print(
            f"    (the target received {row.forwarded.received:,} of {row.stored:,} events,"
            f" all {row.forwarded.drain_seconds:.1f} s after the load ended)",
            flush=True,
        )
    for problem in row.problems:
        print(f"    PROBLEM: {problem}", flush=True)


def _machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def _header(args: argparse.Namespace, urls: dict[str, str], dbs: list[str]) -> None:
    machine = _machine()
    print(
        f"machine: {machine['cpus']} CPUs ({machine['cpu']}), Python {machine['python']}, "
        f"{machine['platform']}"
    )
    print(
        f"load: wrk -t{args.threads} -c{args.connections}, {args.seconds:g} s after "
        f"{args.warmup:g} s warm-up; signed deliveries naming {MATCHED_JOBS:,} finished jobs"
    )
    for database in dbs:
        print(f"{database}: {databases.safe_url(urls[database])}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--no-two-workers", dest="two_workers", action="store_false")
    parser.add_argument(
        "--no-unmatched",
        dest="unmatched",
        action="store_false",
        help="skip the second load variant (deliveries naming no job: verify + insert only)",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=1_000_000,
        help="jobs for the query timings, with a hundredth as many issues (0: skip them)",
    )
    parser.add_argument(
        "--no-open-jobs",
        dest="open_jobs",
        action="store_false",
        help="skip the variant whose webhooks name open (accepted) jobs",
    )
    parser.add_argument(
        "--purge-rows",
        type=int,
        default=1_000_000,
        help="old deliveries housekeeping purges beside a repeat of the main load (0: skip)",
    )
    parser.add_argument(
        "--purge-repeats",
        type=int,
        default=3,
        help="runs of the load with the purge beside it, each after a run without",
    )
    parser.add_argument(
        "--no-outcomes",
        dest="outcomes",
        action="store_false",
        help="skip the timing of record_outcome (a failure with its issue, a success)",
    )
    parser.add_argument(
        "--no-submissions",
        dest="submissions",
        action="store_false",
        help="skip the batch and repeated-key timings",
    )
    parser.add_argument(
        "--traced",
        action="store_true",
        help="also run each database's main load with tracing on (OTLP to a loopback receiver)",
    )
    parser.add_argument(
        "--no-routed",
        dest="routed",
        action="store_false",
        help="skip the routed-events load (entity events forwarded to a loopback target)",
    )
    parser.add_argument(
        "--routed-seconds",
        type=float,
        default=3.0,
        help="length of the routed-events load (its forwards drain after it)",
    )
    parser.add_argument(
        "--forward-timeout",
        type=float,
        default=600.0,
        help="seconds the routed-events load waits for its target to have every event",
    )
    parser.add_argument("--json", help="also write the figures to this file")
    return parser


if __name__ == "__main__":
    sys.exit(main())
