"""The store on a real database: what concurrency properties the service relies on."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import func, select

from service import store
from service.domain import LINK_RULES
from service.store import create_engine, create_readers, create_sessionmaker, sqlite_writer_process
from service.store.ingest_sqlite import SqliteBatchWriter
from tests.factories import job_values


async def test_a_long_read_does_not_block_a_writer(clean_database: str) -> None:
    engine = create_engine(clean_database)
    readers, writers = create_readers(engine), create_sessionmaker(engine)
    count = select(func.count()).select_from(store.Job)
    try:
        async with readers.begin() as reader:
            assert (await reader.execute(count)).scalar_one() == 0
            # While that read transaction is open, a write must go through at once (on SQLite
            # a reader that took the write lock would make this wait for the busy timeout).
            async with asyncio.timeout(5), writers.begin() as writer:
                await store.add_job(writer, store.Job(**job_values(id="w", state="submitted")))
            async with readers.begin() as later:
                assert (await later.execute(count)).scalar_one() == 1  # committed meanwhile
    finally:
        await engine.dispose()


async def test_every_sqlite_connection_commits_to_disk_before_answering(tmp_path: Path) -> None:
    """The API's connections and the webhook writer's own: WAL, a commit synced to disk
    (`synchronous=FULL`, so a 2xx survives a power cut), the same checkpoint size. (Foreign
    keys and the wait for the write lock are tested by what they do.)"""
    path = tmp_path / "pragmas.db"
    names = ("journal_mode", "synchronous", "wal_autocheckpoint", "journal_size_limit")
    engine = create_engine(f"sqlite:///{path}")
    try:
        async with engine.connect() as conn:
            engine_side = [(await conn.exec_driver_sql(f"PRAGMA {n}")).scalar() for n in names]
    finally:
        await engine.dispose()
    writer = sqlite_writer_process.BatchWriter(
        SqliteBatchWriter(str(path), rules=LINK_RULES)._setup
    )
    try:
        writer_side = [writer._conn.execute(f"PRAGMA {n}").fetchone()[0] for n in names]
    finally:
        writer.close()

    assert engine_side == ["wal", 2, 10_000, 64 * 1024 * 1024]
    assert writer_side == engine_side
