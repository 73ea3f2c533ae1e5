"""The store on a real database: what concurrency properties the service relies on."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from sqlalchemy import func, select

from service import store
from service.store import create_engine, create_readers, create_sessionmaker


async def test_a_long_read_does_not_block_a_writer(clean_database: str) -> None:
    engine = create_engine(clean_database)
    readers, writers = create_readers(engine), create_sessionmaker(engine)
    now = datetime.now(UTC)
    try:
        async with readers.begin() as reader:
            await reader.execute(select(func.count()).select_from(store.Job))
            # While that read transaction is open, a write must go through at once (on SQLite
            # a reader that took the write lock would make this wait for the busy timeout).
            async with asyncio.timeout(5):
                async with writers.begin() as writer:
                    await store.add_job(
                        writer,
                        store.Job(
                            id="w",
                            state="submitted",
                            method="POST",
                            path="/v1/x",
                            tags={},
                            notify=True,
                            submitted_at=now,
                            last_modified_at=now,
                        ),
                    )
    finally:
        await engine.dispose()


def test_ingest_writer_open_states_match_the_state_machine() -> None:
    # store/ may not import domain/, so the writer keeps its own copy: it must not drift.
    from service.domain import OPEN_STATES
    from service.store import ingest

    assert set(ingest.OPEN_STATES) == {state.value for state in OPEN_STATES}
