"""Rows the tests need in the database, written through the store as the service writes them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service import store
from service.store import create_engine, create_sessionmaker


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


async def failed_issue(database_url: str, count: int, *, fault_code: str = "12027") -> str:
    """Commit an issue with `count` failed jobs, as the outcome path leaves them."""
    engine = create_engine(database_url)
    issue_id = str(uuid.uuid4())
    now = datetime.now(UTC)
    try:
        async with create_sessionmaker(engine).begin() as session:
            await store.count_failure(
                session,
                {
                    "id": issue_id,
                    "cause_key": uuid.uuid4().hex,
                    "tenant": "1234",
                    "kind": "failed",
                    "fault_code": fault_code,
                    "method": "POST",
                    "path_template": "/v1/salesorder",
                },
                job_id="first",
                at=now,
                reopened_from="resolved",
            )
            await session.execute(
                insert(store.Job),
                [
                    {
                        "id": str(uuid.uuid4()),
                        "state": "failed",
                        "method": "POST",
                        "path": "/v1/salesorder",
                        "tags": {"n": str(n)},
                        "notify": True,
                        "submitted_at": now - timedelta(seconds=count - n),
                        "last_modified_at": now,
                        "finished_at": now,
                        "tenant": "1234",
                        "issue_id": issue_id,
                    }
                    for n in range(count)
                ],
            )
            await session.execute(
                update(store.Issue).where(store.Issue.id == issue_id).values(job_count=count)
            )
    finally:
        await engine.dispose()
    return issue_id
