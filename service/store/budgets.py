"""Recorded rate budgets (`company_budgets`). Functions take a session and never commit."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from service.store.models import CompanyBudgetRecord

_COLUMNS = ("limit", "remaining", "reset_at", "paused_until", "sharers", "recorded_at")


async def record_budgets(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Insert or replace each company's record (replicas may write at once: an upsert)."""
    if not rows:
        return
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = dialect.insert(CompanyBudgetRecord).values(list(rows))
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["tenant"],
            set_={name: statement.excluded[name] for name in _COLUMNS},
        )
    )


async def recorded_budgets(session: AsyncSession) -> list[CompanyBudgetRecord]:
    """Every company's recorded budget."""
    return list((await session.execute(select(CompanyBudgetRecord))).scalars())
