"""The ingest writer refuses deliveries (503) once its writer task is gone, queued ones too."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

from service.domain import LINK_RULES
from service.store import DeliveryRecord, IngestUnavailable, IngestWriter, create_engine
from service.store.ingest import BatchResult, Stored
from service.web.webhooks import delivery_record
from tests.harness import signed_delivery


class StuckBackend:
    """Never finishes a batch, so the writer task can be cancelled in the middle of one."""

    concurrency = 1

    async def open(self) -> None:
        pass

    async def write_together(
        self, records: Sequence[DeliveryRecord]
    ) -> tuple[set[str], set[str], list[str]]:
        await asyncio.Event().wait()
        return {r.id for r in records}, set(), []

    async def write_each(self, records: Sequence[DeliveryRecord]) -> BatchResult:
        await asyncio.Event().wait()
        return BatchResult([Stored.NEW] * len(records), [])

    async def close(self) -> None:
        pass


def record() -> DeliveryRecord:
    body, headers = signed_delivery()
    return delivery_record(headers, body)


async def test_store_refuses_once_the_writer_task_is_gone(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'unused.db'}")
    ingest = IngestWriter(engine, rules=LINK_RULES)
    ingest._backend = StuckBackend()  # type: ignore[assignment]
    await ingest.start()
    try:
        first = asyncio.create_task(ingest.store(record()))  # taken into the stuck batch
        await asyncio.sleep(0.01)
        queued = asyncio.create_task(ingest.store(record()))  # waits behind it
        await asyncio.sleep(0.01)
        ingest._tasks[0].cancel()
        with pytest.raises(IngestUnavailable):
            await queued
        with pytest.raises(IngestUnavailable):
            await ingest.store(record())
        with pytest.raises(IngestUnavailable):
            await first
    finally:
        await ingest.close()
        await engine.dispose()
