"""`/metrics`: the service's own figures, summed over `serve --workers 2`'s processes."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.mmap_dict import MmapedDict

from service.visma import signatures
from tests.cli_process import serving, wait_ready
from tests.conftest import WEBHOOK_SECRET
from tests.factories import insert_job
from tests.harness import in_process, signed_delivery

BAD = 'visma_hooks_webhook_deliveries_total{result="bad_signature"}'
STORED = 'visma_hooks_webhook_deliveries_total{result="stored"}'


def value(text: str, sample: str) -> float | None:
    """A sample's value in an exposition text (None when it is absent)."""
    match = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else None


def per_process(directory: Path, sample_label: str) -> dict[str, float]:
    """Each worker's own count of bad-signature deliveries, read from its metrics file."""
    counts: dict[str, float] = {}
    for path in directory.glob("counter_*.db"):
        for key, count, _timestamp, _pos in MmapedDict.read_all_values_from_file(str(path)):
            if "visma_hooks_webhook_deliveries_total" in key and sample_label in key:
                counts[path.stem] = counts.get(path.stem, 0) + count
    return counts


def test_metrics_sum_every_worker_of_serve(tmp_path: Path) -> None:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    stale = metrics_dir / "counter_1.db"
    stale.write_bytes(b"left over from an earlier run")
    settings = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'hooks.db'}",
        "VISMA_WEBHOOK_SECRETS": WEBHOOK_SECRET,
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "LOG_FORMAT": "json",
    }
    with serving("--workers", "2", cwd=tmp_path, log=tmp_path / "serve.log", **settings) as server:
        wait_ready(server)
        assert not stale.exists(), "serve did not empty PROMETHEUS_MULTIPROC_DIR at start"
        sent = 0
        deadline = time.monotonic() + 30
        # Fresh connections until both workers have refused some: the kernel hands each
        # connection to whichever worker accepts it first.
        while len([n for n in per_process(metrics_dir, "bad_signature").values() if n]) < 2:
            assert time.monotonic() < deadline, per_process(metrics_dir, "bad_signature")
            body, headers = signed_delivery(secret="not-the-secret")
            with httpx.Client() as client:
                answer = client.post(f"{server.url}/webhooks/visma", content=body, headers=headers)
            assert answer.status_code == 401
            sent += 1
        stored = 3
        for _ in range(stored):
            body, headers = signed_delivery()
            with httpx.Client() as client:
                assert (
                    client.post(
                        f"{server.url}/webhooks/visma", content=body, headers=headers
                    ).status_code
                    == 200
                )
        for _ in range(6):  # each scrape on a new connection: either worker may answer
            with httpx.Client() as client:
                text = client.get(f"{server.url}/metrics").text
            assert value(text, BAD) == sent
            assert value(text, STORED) == stored
            assert "visma_hooks_ingest_batch_deliveries_count" in text
    assert "Traceback" not in server.stderr()


@pytest.fixture(name="harness")
async def fixture_harness(clean_database: str):
    async with in_process(clean_database) as harness:
        yield harness


async def test_metrics_show_deliveries_times_and_database_figures(harness) -> None:
    before = (await harness.client.get("/metrics")).text
    stored_before = value(before, STORED) or 0
    timed_before = value(before, "visma_hooks_webhook_handling_seconds_count") or 0
    job_id = await insert_job(harness.resources.sessions, state="accepted")
    for _ in range(3):
        body, headers = signed_delivery()
        answer = await harness.client.post("/webhooks/visma", content=body, headers=headers)
        assert answer.status_code == 200
    body, headers = signed_delivery()
    headers[signatures.SIGNATURE_HEADER] = "bm90IGl0"
    assert (
        await harness.client.post("/webhooks/visma", content=body, headers=headers)
    ).status_code == 401

    text = (await harness.client.get("/metrics")).text
    assert value(text, STORED) == stored_before + 3
    assert value(text, "visma_hooks_webhook_handling_seconds_count") == timed_before + 3
    assert value(text, 'visma_hooks_jobs{company="sim-tenant",state="accepted"}') == 1
    assert value(text, 'visma_hooks_jobs{company="",state="succeeded"}') is None
    assert value(text, "visma_hooks_poll_backlog_jobs") is not None
    assert value(text, "visma_hooks_alert_outbox_deliveries") == 0
    assert value(text, "visma_hooks_alert_outbox_oldest_age_seconds") == 0
    assert job_id
