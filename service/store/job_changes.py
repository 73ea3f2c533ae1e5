"""Who waits for which job to change, and how they learn that it did.

A transaction that adds to a job's timeline (`store.add_event`) names the job in its session;
when it commits, the job's waiters in this process wake (`JOB_CHANGES`). On PostgreSQL the
commit also sends `NOTIFY vh_job_changed, '<job id>'` (sent only if the transaction commits),
and each process keeps one connection that LISTENs and wakes its own waiters, so a client
waiting on one replica learns of a change another made. A thousand waiters cost a thousand
asyncio events, not a thousand connections or queries: a waiter reads the job again only when
woken. A listener that reconnects wakes everyone (they may have missed a change), so a lost
notification costs a re-read, never a missed change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import asyncpg
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

CHANNEL = "vh_job_changed"
_SESSION_KEY = "vh_changed_jobs"


class JobChanges:
    """The waiters of this process, by job id."""

    def __init__(self) -> None:
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._generations: dict[str, int] = {}

    @contextlib.contextmanager
    def watch(self, job_id: str) -> Iterator[asyncio.Event]:
        """An event set whenever `job_id` may have changed, for the block's duration."""
        changed = asyncio.Event()
        self._waiters.setdefault(job_id, set()).add(changed)
        try:
            yield changed
        finally:
            waiters = self._waiters.get(job_id)
            if waiters is not None:
                waiters.discard(changed)
                if not waiters:
                    del self._waiters[job_id]
                    self._generations.pop(job_id, None)

    def publish(self, job_ids: Iterable[str]) -> None:
        """Wake the waiters of these jobs."""
        for job_id in job_ids:
            if job_id in self._waiters:
                self._generations[job_id] = self._generations.get(job_id, 0) + 1
            for changed in self._waiters.get(job_id, ()):
                changed.set()

    def publish_all(self) -> None:
        """Wake every waiter (after a lost connection: any job may have changed)."""
        for job_id, waiters in self._waiters.items():
            self._generations[job_id] = self._generations.get(job_id, 0) + 1
            for changed in waiters:
                changed.set()

    def generation(self, job_id: str) -> int:
        """How many times a watched job was said to change: waiters woken by the same change
        see the same number, so they can share one read of it."""
        return self._generations.get(job_id, 0)

    def waiting(self) -> int:
        """How many waiters there are now."""
        return sum(len(waiters) for waiters in self._waiters.values())


JOB_CHANGES = JobChanges()
"""This process's waiters (one event loop serves them all)."""


def mark_changed(session: Any, job_id: str) -> None:
    """Note in the (async) session that the job changes; its waiters wake on commit."""
    session.info.setdefault(_SESSION_KEY, set()).add(job_id)


@event.listens_for(Session, "before_commit")
def _notify_other_processes(session: Session) -> None:
    changed = session.info.get(_SESSION_KEY)
    if not changed or session.get_bind().dialect.name != "postgresql":
        return
    # Transactional: PostgreSQL delivers it only if this commit succeeds.
    for job_id in sorted(changed):
        session.execute(select(func.pg_notify(CHANNEL, job_id)))


@event.listens_for(Session, "after_commit")
def _wake_waiters(session: Session) -> None:
    changed = session.info.pop(_SESSION_KEY, None)
    if changed:
        JOB_CHANGES.publish(changed)


@event.listens_for(Session, "after_rollback")
def _forget(session: Session) -> None:
    session.info.pop(_SESSION_KEY, None)


class JobChangeListener:
    """One PostgreSQL connection per process that LISTENs for job changes (not from the pool:
    a pooled connection would be handed to others). It checks the connection every
    `keepalive_seconds` (a half-open one says nothing) and reconnects with a growing delay."""

    def __init__(
        self,
        connect_kwargs: Mapping[str, Any],
        *,
        changes: JobChanges = JOB_CHANGES,
        keepalive_seconds: float = 30.0,
        timeout_seconds: float = 10.0,
    ) -> None:
        self._connect_kwargs = dict(connect_kwargs)
        self._changes = changes
        self._keepalive = keepalive_seconds
        self._timeout = timeout_seconds
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="job-change-listener")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        self._changes.publish((payload,))

    async def _run(self) -> None:
        delay = 0.5
        while True:
            conn = None
            try:
                conn = await asyncpg.connect(**self._connect_kwargs, timeout=self._timeout)
                await conn.add_listener(CHANNEL, self._on_notify)
                self.connected.set()
                # Changes made while no one listened: let every waiter read again.
                self._changes.publish_all()
                delay = 0.5
                while True:
                    await asyncio.sleep(self._keepalive)
                    await conn.fetchval("SELECT 1", timeout=self._timeout)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("job change listener: %s; reconnecting in %.1f s", exc, delay)
            finally:
                self.connected.clear()
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close(timeout=self._timeout)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)


def listener_for(engine: Any) -> JobChangeListener | None:
    """The listener a PostgreSQL engine's process needs (None on SQLite, where waiters learn
    of the changes their own process makes)."""
    if engine.dialect.name != "postgresql":
        return None
    _args, connect_kwargs = engine.dialect.create_connect_args(engine.url)
    kwargs = {
        k: v
        for k, v in connect_kwargs.items()
        if k not in ("prepared_statement_cache_size", "prepared_statement_name_func")
    }
    return JobChangeListener(kwargs)
