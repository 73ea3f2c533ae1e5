"""Load for the ingest benchmark: signed dispatcher deliveries, each with its own notification id.

Two generators send the same requests: wrk with `ingest.lua` (fast, for `make bench`) and a small
httpx loop (no outside tool, for the smoke test). Both give a `LoadResult`; `check_counts` then
holds it against the rows the database has: every 2xx must be stored, and rows beyond the 2xx
can only come from requests still in flight when the load stopped.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import statistics
import subprocess
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from service.visma import signatures

LUA_SCRIPT = Path(__file__).with_name("ingest.lua")
WEBHOOK_PATH = "/webhooks/visma"
VISMA_API = "https://api.finance.visma.net"


@dataclass(frozen=True)
class Delivery:
    """One precomputed signed body; the notification id is added per request."""

    job_id: str | None
    signature: str
    body: bytes


@dataclass
class LoadResult:
    """What the load generator saw."""

    tool: str
    connections: int
    seconds: float
    responses: int
    ok: int
    """2xx answers."""
    not_ok: int
    """Answers that were not 2xx."""
    socket_errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    cpu_seconds: float = 0.0
    """CPU time the server used while this load ran (filled in by the benchmark)."""

    @property
    def rps(self) -> float:
        return self.responses / self.seconds if self.seconds else 0.0


def make_deliveries(secret: str, job_ids: Sequence[str], count: int) -> list[Delivery]:
    """`count` signed bodies shaped like the simulator's, naming `job_ids` in turn."""
    deliveries = []
    for i in range(count):
        job_id = job_ids[i % len(job_ids)] if job_ids else None
        # A named job's own Visma job id (`databases.seed_jobs`), as Visma's webhooks carry it.
        visma_id = f"v-{job_id}" if job_id else str(uuid.uuid4())
        body = json.dumps(
            {
                "id": visma_id,
                "stateLocation": f"{VISMA_API}/v1/background/{visma_id}",
                "contentLocation": f"{VISMA_API}/v1/background/{visma_id}/content",
            },
            separators=(",", ":"),
        ).encode()
        deliveries.append(Delivery(job_id, signatures.sign(body, secret), body))
    return deliveries


def write_deliveries(path: Path, deliveries: Sequence[Delivery]) -> None:
    """The input file of `ingest.lua`: `<vh-job-id>\\t<signature>\\t<body>` per line."""
    with path.open("w") as out:
        for d in deliveries:
            out.write(f"{d.job_id or ''}\t{d.signature}\t{d.body.decode()}\n")


def new_prefix(label: str) -> str:
    """A notification-id prefix no other run uses."""
    return f"{label}-{uuid.uuid4().hex[:8]}"


def run_wrk(
    url: str,
    *,
    deliveries_file: Path,
    prefix: str,
    connections: int,
    seconds: float,
    threads: int = 2,
    event_id: str | None = None,
) -> LoadResult:
    """Drive `url` with wrk for `seconds` at `connections` (each delivery's x-vwd-event-id
    `event_id`, else BACKGROUND_API_RESPONSE)."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk is not installed (make bench installs it: apt-get install wrk)")
    command = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA_SCRIPT),
        url + WEBHOOK_PATH,
        "--",
        str(deliveries_file),
        prefix,
        *([event_id] if event_id else []),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    match = re.search(r"^BENCH_JSON (.*)$", done.stdout, re.MULTILINE)
    if done.returncode != 0 or match is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout}\n{done.stderr}")
    data = json.loads(match.group(1))
    responses = int(data["requests"])
    not_ok = int(data["status_errors"])  # wrk counts every answer with status > 399
    return LoadResult(
        tool="wrk",
        connections=connections,
        seconds=data["duration_us"] / 1e6,
        responses=responses,
        ok=responses - not_ok,  # the service answers 2xx or 4xx/5xx, never 1xx or 3xx
        not_ok=not_ok,
        socket_errors=sum(
            int(data[k]) for k in ("connect_errors", "read_errors", "write_errors", "timeouts")
        ),
        p50_ms=data["p50_us"] / 1000,
        p90_ms=data["p90_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
    )


async def run_python_load(
    url: str,
    *,
    deliveries: Sequence[Delivery],
    prefix: str,
    total: int,
    connections: int,
    event_id: str = signatures.BACKGROUND_EVENT,
) -> LoadResult:
    """Send `total` deliveries over `connections` keep-alive connections with httpx."""
    latencies: list[float] = []
    statuses: list[int] = []
    errors = 0
    counter = iter(range(total))
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal errors
        for n in counter:
            d = deliveries[n % len(deliveries)]
            headers = {
                "content-type": "application/json",
                signatures.SIGNATURE_HEADER: d.signature,
                signatures.EVENT_ID_HEADER: event_id,
                signatures.NOTIFICATION_ID_HEADER: f"{prefix}-{n}",
            }
            if d.job_id:
                headers["vh-job-id"] = d.job_id
            started = time.perf_counter()
            try:
                response = await client.post(WEBHOOK_PATH, content=d.body, headers=headers)
            except httpx.HTTPError:
                errors += 1
                continue
            latencies.append(time.perf_counter() - started)
            statuses.append(response.status_code)

    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        await asyncio.gather(*(worker(client) for _ in range(connections)))
    seconds = time.perf_counter() - started
    ok = sum(1 for s in statuses if 200 <= s < 300)
    return LoadResult(
        tool="httpx",
        connections=connections,
        seconds=seconds,
        responses=len(statuses),
        ok=ok,
        not_ok=len(statuses) - ok,
        socket_errors=errors,
        p50_ms=_percentile(latencies, 50),
        p90_ms=_percentile(latencies, 90),
        p99_ms=_percentile(latencies, 99),
    )


def check_counts(result: LoadResult, stored: int) -> list[str]:
    """What is wrong with `stored` rows for this load's answers (nothing: an empty list)."""
    problems = []
    if stored < result.ok:
        problems.append(f"{result.ok - stored} deliveries were acknowledged (2xx) but not stored")
    # A request still in flight when the load stopped may be stored without its 2xx being
    # counted: at most one per connection, plus any whose connection failed.
    in_flight = result.connections + result.socket_errors
    if stored - result.ok > in_flight:
        problems.append(
            f"{stored - result.ok} rows more than 2xx answers, but at most {in_flight} "
            "requests can have been in flight"
        )
    return problems


def _percentile(values: Sequence[float], pct: int) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0] * 1000
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1] * 1000
