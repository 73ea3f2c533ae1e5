"""The service's Prometheus metrics: names, units and labels in one place.

With `PROMETHEUS_MULTIPROC_DIR` set before the process starts (`serve --workers N` sets it up
itself), prometheus-client keeps each value in a file of that directory, and a scrape of any
worker adds up every worker's (`render`). Counters and histograms need nothing more; figures that
come from the database are no process's own: they are read at scrape time and rendered beside
the others (`DatabaseFigures`), never kept in a gauge of one process.

The webhook path pays almost nothing: label children are bound here, at import; the stored and
duplicate counts are added once per ingest batch (by the writer); and a handling time is put
in a bucket of a plain list (`FastHistogram`), moved into the real histogram once per batch and
before each scrape, so no request takes a lock for its metrics.
"""

from __future__ import annotations

import asyncio
import collections
import os
from bisect import bisect_left
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST

# Deliveries to POST /webhooks/visma, by what became of them.
DELIVERIES = Counter(
    "visma_hooks_webhook_deliveries_total",
    "Visma webhook deliveries by result",
    ["result"],
)
DELIVERY_STORED = DELIVERIES.labels("stored")
DELIVERY_DUPLICATE = DELIVERIES.labels("duplicate")
DELIVERY_BAD_SIGNATURE = DELIVERIES.labels("bad_signature")
DELIVERY_TOO_LARGE = DELIVERIES.labels("too_large")
DELIVERY_UNAVAILABLE = DELIVERIES.labels("unavailable")
DELIVERY_FORBIDDEN = DELIVERIES.labels("forbidden")

# Stored Visma deliveries by event id: the background answer, each routed event (by its exact
# id, or the glob that routes it), and `other` for the rest, so the series stay as few as routes.
EVENT_DELIVERIES = Counter(
    "visma_hooks_deliveries_total",
    "Visma webhook deliveries stored, by event id (unrouted events other than the background "
    "answer as other)",
    ["event"],
)
EVENT_BACKGROUND = EVENT_DELIVERIES.labels("BACKGROUND_API_RESPONSE")

WEBHOOK_SECONDS = Histogram(
    "visma_hooks_webhook_handling_seconds",
    "Time to verify, store and answer one Visma webhook delivery",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

INGEST_BATCH = Histogram(
    "visma_hooks_ingest_batch_deliveries",
    "Deliveries written together in one ingest commit (group commit)",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)

JOB_OUTCOME_SECONDS = Histogram(
    "visma_hooks_job_outcome_seconds",
    "Time from a job's submission to its outcome",
    ["state"],
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400, 172800),
)

VISMA_REQUESTS = Counter(
    "visma_hooks_visma_requests_total",
    "Requests to Visma by kind (token, submit, state, content) and HTTP status "
    "(`error`: no answer)",
    ["kind", "status"],
)

ALERT_SENDS = Counter(
    "visma_hooks_alert_sends_total",
    "Alert send attempts by channel (webhook, slack) and result (sent, failed, gone)",
    ["channel", "result"],
)

PURGED_ROWS = Counter(
    "visma_hooks_purged_rows_total",
    "Rows retention's purge removed, by kind (deliveries, jobs, status_history, alerts, "
    "idempotency_keys, dashboard_sessions, operations, notification_ids: the ids it kept for "
    "the dedupe window, let go)",
    ["kind"],
)


# Held back by failed authentication (web/throttle.py): `address` once per address and window,
# `total` once per window in which all addresses together reached the cap.
AUTH_HELD_BACK = Counter(
    "visma_hooks_auth_held_back_total",
    "Client addresses held back (429) after too many wrong tokens in a minute, by reason "
    "(address: its own failures; total: all addresses' together)",
    ["reason"],
)

# Requests refused for their token: `wrong_token` (401, counted toward the limit) and
# `held_back` (429, the token not even compared).
AUTH_REFUSED = Counter(
    "visma_hooks_auth_refused_total",
    "Requests to POST /login and /api/ refused for their token, by result (wrong_token: 401; "
    "held_back: 429)",
    ["result"],
)
AUTH_WRONG_TOKEN = AUTH_REFUSED.labels("wrong_token")
AUTH_REFUSED_HELD_BACK = AUTH_REFUSED.labels("held_back")


# Connections the server (server.py) ended before or while their request reached the
# application, by reason; bound here so a refusal costs one counter increment.
CONNECTIONS_REFUSED = Counter(
    "visma_hooks_connections_refused_total",
    "Connections the server refused or cut off, by reason (client_limit: over "
    "MAX_CONNECTIONS_PER_CLIENT, 429; server_full: over MAX_CONNECTIONS, 503; head_timeout; "
    "head_too_large; body_timeout: no body byte for BODY_TIMEOUT_SECONDS)",
    ["reason"],
)
REFUSED_CLIENT_LIMIT = CONNECTIONS_REFUSED.labels("client_limit")
REFUSED_SERVER_FULL = CONNECTIONS_REFUSED.labels("server_full")
REFUSED_HEAD_TIMEOUT = CONNECTIONS_REFUSED.labels("head_timeout")
REFUSED_HEAD_TOO_LARGE = CONNECTIONS_REFUSED.labels("head_too_large")
REFUSED_BODY_TIMEOUT = CONNECTIONS_REFUSED.labels("body_timeout")

# `?wait` long polls answered at once because MAX_WAITERS were already held (web/waiters.py).
WAITS_TURNED_AWAY = Counter(
    "visma_hooks_waits_turned_away_total",
    "Long polls (GET /api/v1/jobs/{id}?wait=) answered at once, with Retry-After, because "
    "MAX_WAITERS were already waiting in the process",
)


class FastHistogram:
    """Observations of one histogram gathered in plain lists, then added to it in one go.

    An observation is a bisect and two additions, no lock: callers are one event loop's
    coroutines. `flush` adds them to the histogram (its bucket and sum values, which is what
    `Histogram.observe` does one at a time)."""

    def __init__(self, histogram: Histogram) -> None:
        self._histogram = histogram
        self._bounds: Sequence[float] = list(histogram._upper_bounds)
        self._counts = [0] * len(self._bounds)
        self._sum = 0.0
        self._pending = False

    def observe(self, value: float) -> None:
        self._counts[bisect_left(self._bounds, value)] += 1
        self._sum += value
        self._pending = True

    def flush(self) -> None:
        if not self._pending:
            return
        counts, self._counts = self._counts, [0] * len(self._bounds)
        total, self._sum = self._sum, 0.0
        self._pending = False
        for index, count in enumerate(counts):
            if count:
                self._histogram._buckets[index].inc(count)
        self._histogram._sum.inc(total)


WEBHOOK_TIMER = FastHistogram(WEBHOOK_SECONDS)
_flush_scheduled = False


def record_batch(*, stored: int, duplicate: int, failed: int) -> None:
    """One ingest batch's outcomes (the writer calls it once per commit); the handler counts
    the deliveries it answers 503 itself."""
    global _flush_scheduled
    INGEST_BATCH.observe(stored + duplicate + failed)
    if stored:
        DELIVERY_STORED.inc(stored)
    if duplicate:
        DELIVERY_DUPLICATE.inc(duplicate)
    # The batch's requests record their times after this returns: flush them a moment later.
    if not _flush_scheduled:
        _flush_scheduled = True
        asyncio.get_running_loop().call_later(0.2, _flush_timers)


def record_events(background: int, labels: Collection[str]) -> None:
    """One batch's stored deliveries by event: `background` answers, and one label each for
    the rest (the writer bounds them)."""
    if background:
        EVENT_BACKGROUND.inc(background)
    for label, count in collections.Counter(labels).items():
        EVENT_DELIVERIES.labels(label).inc(count)


def _flush_timers() -> None:
    global _flush_scheduled
    _flush_scheduled = False
    WEBHOOK_TIMER.flush()


def visma_request(kind: str, status: int | None) -> None:
    """One request to Visma and its answer's status (None: no answer)."""
    VISMA_REQUESTS.labels(kind, "error" if status is None else str(status)).inc()


@dataclass(frozen=True)
class DatabaseFigures:
    """What the database says at scrape time: the same for every worker, so no process keeps
    it. Each mapping is labels -> value."""

    jobs: dict[tuple[str, str], float] = field(default_factory=dict)
    """(state, company) -> jobs."""
    poll_backlog: float = 0
    outbox_depth: float = 0
    outbox_oldest_age_seconds: float = 0
    table_rows: dict[str, float] = field(default_factory=dict)
    table_oldest_age_seconds: dict[str, float] = field(default_factory=dict)
    rate_budgets: dict[str, tuple[float | None, float | None, float | None]] = field(
        default_factory=dict
    )
    """company -> (limit, remaining, seconds to the reset), as the scraped worker last heard
    them from Visma (the budget is Visma's, shared: any worker's view will do)."""

    def families(self) -> Iterable[Metric]:
        jobs = GaugeMetricFamily(
            "visma_hooks_jobs", "Jobs by state and company", labels=["state", "company"]
        )
        for (state, company), value in sorted(self.jobs.items()):
            jobs.add_metric([state, company], value)
        yield jobs
        yield GaugeMetricFamily(
            "visma_hooks_poll_backlog_jobs",
            "Open jobs whose state read is due now",
            value=self.poll_backlog,
        )
        yield GaugeMetricFamily(
            "visma_hooks_alert_outbox_deliveries",
            "Alert sends waiting in the outbox (pending or to retry)",
            value=self.outbox_depth,
        )
        yield GaugeMetricFamily(
            "visma_hooks_alert_outbox_oldest_age_seconds",
            "Age of the oldest alert send waiting in the outbox (0: none waits)",
            value=self.outbox_oldest_age_seconds,
        )
        rows = GaugeMetricFamily(
            "visma_hooks_table_rows", "Rows of each table retention trims", labels=["table"]
        )
        for table, value in sorted(self.table_rows.items()):
            rows.add_metric([table], value)
        yield rows
        oldest = GaugeMetricFamily(
            "visma_hooks_table_oldest_age_seconds",
            "Age of the oldest row of each table retention trims",
            labels=["table"],
        )
        for table, value in sorted(self.table_oldest_age_seconds.items()):
            oldest.add_metric([table], value)
        yield oldest
        yield from self._budget_families()

    def _budget_families(self) -> Iterable[Metric]:
        names = (
            ("visma_hooks_visma_rate_limit_requests", "Each company's hourly Visma budget"),
            ("visma_hooks_visma_rate_remaining_requests", "Requests left in the window"),
            ("visma_hooks_visma_rate_reset_seconds", "Seconds until the window resets"),
        )
        for index, (name, documentation) in enumerate(names):
            family = GaugeMetricFamily(name, documentation, labels=["company"])
            for company, values in sorted(self.rate_budgets.items()):
                if values[index] is not None:  # Visma has not said yet
                    family.add_metric([company], float(values[index] or 0))
            yield family


class _Figures(Collector):
    def __init__(self, figures: DatabaseFigures) -> None:
        self._figures = figures

    def collect(self) -> Iterable[Metric]:
        return self._figures.families()


def render(figures: DatabaseFigures | None = None) -> bytes:
    """The exposition text: every worker's counters and histograms (one process's when not in
    multiprocess mode), then the database's figures."""
    WEBHOOK_TIMER.flush()
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        text = generate_latest(registry)
    else:
        text = generate_latest(REGISTRY)
    if figures is not None:
        scrape = CollectorRegistry()
        scrape.register(_Figures(figures))
        text += generate_latest(scrape)
    return text
