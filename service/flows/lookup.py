"""Finding a job by its id, or by the first characters of one (the CLI shows 8)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service import store
from service.domain import InvalidInput, NotFound, decode_id

NO_JOB = "no job with id {job_id!r}"
AMBIGUOUS = "{prefix!r} is the start of {count} job ids: {ids}; give more of the id"
_LISTED = 10


async def find_job_id(sessions: async_sessionmaker[AsyncSession], id_or_prefix: str) -> str:
    """The id of the job `id_or_prefix` names: its whole id, or a prefix no other id shares."""
    wanted = decode_id(id_or_prefix)
    async with sessions.begin() as session:
        if await store.get_job(session, wanted) is not None:
            return wanted
        matches = await store.job_ids_starting_with(session, wanted, limit=_LISTED + 1)
    if not matches:
        raise NotFound(NO_JOB.format(job_id=wanted))
    if len(matches) == 1:
        return matches[0]
    count = f"more than {_LISTED}" if len(matches) > _LISTED else str(len(matches))
    raise InvalidInput(
        AMBIGUOUS.format(prefix=wanted, count=count, ids=", ".join(matches[:_LISTED]))
    )
