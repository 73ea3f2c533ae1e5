"""Rows the tests need in the database, written through the store as the service writes them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service import store


def job_values(*, state: str = "accepted", **fields: Any) -> dict[str, Any]:
    """The columns of one job (an `accepted` POST /v1/customer unless `fields` say otherwise)."""
    now = datetime.now(UTC)
    return {
        "id": str(uuid.uuid4()),
        "state": state,
        "method": "POST",
        "path": "/v1/customer",
        "tags": {},
        "notify": True,
        "submitted_at": now,
        "last_modified_at": now,
        **fields,
    }


async def insert_job(
    sessions: async_sessionmaker[AsyncSession], *, state: str = "accepted", **fields: Any
) -> str:
    """Commit one job (an `accepted` POST /v1/customer unless `fields` say otherwise)."""
    values = job_values(state=state, **fields)
    async with sessions.begin() as session:
        await store.add_job(session, store.Job(**values))
    return str(values["id"])
