"""The SQLite ingest writer's own process (store/sqlite_writer_process.py): it writes what the
service hands it, survives what it must, and never outlives the service. Each test has a SQLite
file of its own, whatever database the suite runs on."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import uvloop
from sqlalchemy import select

from service import store
from service.cli import migrate
from service.domain import LINK_RULES
from service.store import DeliveryRecord, IngestUnavailable, IngestWriter
from service.store.ingest_sqlite import SqliteBatchWriter
from service.web.webhooks import delivery_record
from tests.harness import signed_delivery


def record(notification_id: str) -> DeliveryRecord:
    body, headers = signed_delivery(job_id="job-1", notification_id=notification_id)
    return delivery_record(headers, body)


def running(pid: int) -> bool:
    """Whether `pid` runs (a zombie, exited but not yet reaped, does not)."""
    with contextlib.suppress(FileNotFoundError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0] != "Z"
    return False


@pytest.fixture(name="url")
def fixture_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'writer.db'}"
    migrate(url)
    return url


@pytest.fixture(name="ingest")
async def fixture_ingest(url: str) -> AsyncIterator[IngestWriter]:
    engine = store.create_engine(url)
    ingest = IngestWriter(engine, rules=LINK_RULES)
    await ingest.start()
    try:
        yield ingest
    finally:
        await ingest.close()
        await engine.dispose()


def writer_pid(ingest: IngestWriter) -> int:
    backend = ingest._backend
    assert isinstance(backend, SqliteBatchWriter) and backend.pid is not None
    return backend.pid


def when_done(task: asyncio.Task[object]) -> list[float]:
    """Filled with the instant `task` finishes (so a test can say it finished after X)."""
    at: list[float] = []
    task.add_done_callback(lambda _task: at.append(time.monotonic()))
    return at


async def stored_notification_ids(url: str) -> set[str | None]:
    engine = store.create_engine(url)
    try:
        async with store.create_sessionmaker(engine)() as session:
            rows = await session.execute(select(store.Delivery.notification_id))
            return set(rows.scalars())
    finally:
        await engine.dispose()


async def test_a_batch_in_hand_when_the_process_dies_is_written_by_a_new_one(
    ingest: IngestWriter, url: str
) -> None:
    assert await ingest.store(record("n-before")) is True
    pid = writer_pid(ingest)
    os.kill(pid, signal.SIGSTOP)  # it cannot take the next batch ...
    pending = asyncio.create_task(ingest.store(record("n-in-hand")))
    answered_at = when_done(pending)
    await asyncio.sleep(0.2)  # the scenario: the batch is in the stopped process's hands
    killed_at = time.monotonic()
    os.kill(pid, signal.SIGKILL)

    assert await pending is True
    # ... and it was answered only after the process died, once a new one committed it.
    assert answered_at[0] > killed_at
    assert writer_pid(ingest) != pid
    assert await ingest.store(record("n-after")) is True
    assert await stored_notification_ids(url) == {"n-before", "n-in-hand", "n-after"}


async def test_a_process_that_died_while_idle_costs_no_delivery(
    ingest: IngestWriter, url: str
) -> None:
    pid = writer_pid(ingest)
    os.kill(pid, signal.SIGKILL)
    await asyncio.sleep(0.2)

    assert await ingest.store(record("n-1")) is True
    assert await stored_notification_ids(url) == {"n-1"}


async def test_the_process_ignores_signals_meant_for_the_service(ingest: IngestWriter) -> None:
    """A Ctrl-C or SIGTERM must not end it before the service has drained its queue into it."""
    pid = writer_pid(ingest)
    os.kill(pid, signal.SIGINT)
    os.kill(pid, signal.SIGTERM)
    await asyncio.sleep(0.2)

    assert running(pid)
    assert await ingest.store(record("n-1")) is True
    assert writer_pid(ingest) == pid


async def test_closing_the_writer_ends_its_process(url: str) -> None:
    engine = store.create_engine(url)
    ingest = IngestWriter(engine, rules=LINK_RULES)
    await ingest.start()
    pid = writer_pid(ingest)
    try:
        await ingest.close()
    finally:
        await engine.dispose()

    assert not running(pid)
    with pytest.raises(IngestUnavailable):
        await ingest.store(record("n-late"))


async def test_a_cancelled_batch_leaves_the_next_one_its_own_answer(url: str) -> None:
    """A cancelled write may leave an answer in the socket: the next batch must not read it."""
    path = url.removeprefix("sqlite:///")
    writer = SqliteBatchWriter(path, rules=LINK_RULES)
    await writer.open()
    try:
        assert writer.pid is not None
        os.kill(writer.pid, signal.SIGSTOP)
        first = asyncio.create_task(writer.write_together([record("n-1"), record("n-2")]))
        await asyncio.sleep(0.2)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first

        third = record("n-3")
        inserted, _linked, _due = await writer.write_together([third])
    finally:
        await writer.close()

    assert inserted == {third.id}
    assert await stored_notification_ids(url) == {"n-3"}


async def test_a_file_that_cannot_be_opened_is_a_clear_error(tmp_path: Path) -> None:
    writer = SqliteBatchWriter(str(tmp_path / "no-such-directory" / "x.db"), rules=LINK_RULES)
    with pytest.raises(RuntimeError, match="could not open .*no-such-directory"):
        await writer.open()
    # Right after a failed start it does not start another interpreter per batch.
    with pytest.raises(Exception, match="next try in"):
        await writer.write_together([record("n-1")])
    await writer.close()


def test_under_uvloop_the_process_holds_none_of_the_services_descriptors(url: str) -> None:
    """uvloop, the service's loop, hands a child every inheritable descriptor (its listening
    socket, with several workers): the process closes all but its own."""
    path = url.removeprefix("sqlite:///")
    inheritable = os.open(os.devnull, os.O_RDONLY)
    os.set_inheritable(inheritable, True)

    async def open_files() -> set[str]:
        writer = SqliteBatchWriter(path, rules=LINK_RULES)
        await writer.open()
        try:
            await writer.write_together([record("n-1")])
            assert writer.pid is not None
            fds = Path(f"/proc/{writer.pid}/fd")
            return {os.readlink(fd) for fd in fds.iterdir() if int(fd.name) > 2}
        finally:
            await writer.close()

    try:
        files = uvloop.run(open_files())
    finally:
        os.close(inheritable)

    assert os.devnull not in files
    assert {f for f in files if not f.startswith("socket:")} <= {path, f"{path}-wal", f"{path}-shm"}


async def test_a_batch_waits_for_the_write_lock_another_connection_holds(url: str) -> None:
    """The resolver's transactions take the same write lock: a batch waits, it does not fail."""
    path = url.removeprefix("sqlite:///")
    writer = SqliteBatchWriter(path, rules=LINK_RULES)
    await writer.open()
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        both = [record("n-1"), record("n-2")]
        batch = asyncio.create_task(writer.write_together(both))
        finished_at = when_done(batch)
        await asyncio.sleep(0.3)  # the scenario: the lock is held a while
        released_at = time.monotonic()
        holder.execute("COMMIT")

        inserted, _linked, _due = await batch
    finally:
        holder.close()
        await writer.close()

    assert inserted == {r.id for r in both}
    assert finished_at[0] > released_at  # it waited for the lock, and did not fail meanwhile
    assert await stored_notification_ids(url) == {"n-1", "n-2"}
