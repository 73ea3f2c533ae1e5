"""The one way a flow changes a job: in a transaction of its own, with the job's row locked."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service import store


@contextlib.asynccontextmanager
async def locked_job(
    sessions: async_sessionmaker[AsyncSession], job_id: str
) -> AsyncIterator[tuple[AsyncSession, store.Job | None]]:
    """A transaction holding the job's row locked (None if there is no such job), committed
    when the block ends. Nothing inside may call Visma: the lock would wait on the network."""
    async with sessions.begin() as session:
        yield session, await store.get_job(session, job_id, for_update=True)
