"""Issue queries: a failure counted on its cause's row, the lists, and a person's state moves.
Functions take a session and never commit."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, bindparam, case, func, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from service.store.models import Issue, StatusIncident

OPEN = "open"
RESOLVED = "resolved"


@dataclass(frozen=True)
class CountedFailure:
    """The issue a failure was counted on, and whether this failure opened it."""

    issue_id: str
    opened: bool
    """This failure made the issue open: it is new (`job_count` 1) or it was resolved."""
    job_count: int


async def count_failure(
    session: AsyncSession,
    values: Mapping[str, Any],
    *,
    job_id: str,
    at: datetime,
    reopened_from: str,
) -> CountedFailure:
    """Count a failure on the issue of its cause (`values["cause_key"]`), made if new.

    One statement (INSERT ... ON CONFLICT DO UPDATE), so failures of one cause recorded at once
    on several replicas are all counted on the one row, and exactly one of them finds itself
    as the job that opened (or reopened: it was in `reopened_from`) it.
    """
    statement = _upsert(session.get_bind().dialect.name)
    parameters = {
        **values,
        "state": OPEN,
        "first_seen_at": at,
        "last_seen_at": at,
        "job_count": 1,
        "first_job_id": job_id,
        "opened_by_job_id": job_id,
        "state_changed_at": at,
        "seen_at": at,
        "counted_job_id": job_id,
        "reopened_from": reopened_from,
    }
    issue_id, opened_by, job_count = (await session.execute(statement, parameters)).one()
    return CountedFailure(issue_id=issue_id, opened=opened_by == job_id, job_count=job_count)


_UPSERTS: dict[str, Any] = {}
"""`count_failure`'s statement per dialect, built once: building it (the `excluded` alias, the
values) cost more than the database's work on it, on every failure recorded."""


def _upsert(dialect: str) -> Any:
    statement = _UPSERTS.get(dialect)
    if statement is not None:
        return statement
    table = cast(Table, Issue.__table__)
    new = (pg_insert if dialect == "postgresql" else sqlite_insert)(table)
    at = bindparam("seen_at", type_=table.c.last_seen_at.type)
    job_id = bindparam("counted_job_id", type_=table.c.opened_by_job_id.type)
    reopens = table.c.state == bindparam("reopened_from", type_=table.c.state.type)
    statement = new.on_conflict_do_update(
        index_elements=[table.c.cause_key],
        set_={
            "job_count": table.c.job_count + 1,
            "last_seen_at": case((table.c.last_seen_at < at, at), else_=table.c.last_seen_at),
            "state": case((reopens, OPEN), else_=table.c.state),
            "opened_by_job_id": case((reopens, job_id), else_=table.c.opened_by_job_id),
            "state_changed_at": case((reopens, at), else_=table.c.state_changed_at),
            "resolved_at": case((reopens, None), else_=table.c.resolved_at),
            "incident_id": func.coalesce(table.c.incident_id, new.excluded.incident_id),
        },
    ).returning(table.c.id, table.c.opened_by_job_id, table.c.job_count)
    _UPSERTS[dialect] = statement
    return statement


async def get_issue(
    session: AsyncSession, issue_id: str, *, for_update: bool = False
) -> Issue | None:
    if "\x00" in issue_id:
        return None
    query = select(Issue).where(Issue.id == issue_id)
    if for_update:
        query = query.with_for_update().execution_options(populate_existing=True)
    return (await session.execute(query)).scalar_one_or_none()


async def list_issues(
    session: AsyncSession,
    *,
    states: Sequence[str] = (),
    tenants: Sequence[str] = (),
    limit: int,
    offset: int,
) -> tuple[Sequence[Issue], int]:
    """One page of issues, most recently failed first, and the total count."""
    conditions: list[ColumnElement[bool]] = []
    if states:
        conditions.append(Issue.state.in_(states))
    if tenants:
        conditions.append(Issue.tenant.in_(tenants))
    query = (
        select(Issue)
        .where(*conditions)
        .order_by(Issue.last_seen_at.desc(), Issue.id.desc())
        .limit(limit)
        .offset(offset)
    )
    total = (
        await session.execute(select(func.count()).select_from(Issue).where(*conditions))
    ).scalar_one()
    return (await session.execute(query)).scalars().all(), total


async def set_issue_state(session: AsyncSession, issue: Issue, state: str, *, at: datetime) -> None:
    """Move the (locked) issue to `state`, if it is not there already."""
    if issue.state == state:
        return
    issue.state = state
    issue.state_changed_at = at
    issue.resolved_at = at if state == RESOLVED else None
    await session.flush()


# Built once: every failure recorded asks it (see `_UPSERTS`).
_OPEN_INCIDENTS = (
    select(StatusIncident)
    .where(
        or_(
            StatusIncident.status.is_(None),
            StatusIncident.status.not_in(bindparam("closed", expanding=True)),
        )
    )
    .order_by(StatusIncident.updated_at.desc().nulls_last(), StatusIncident.id.desc())
    .limit(50)
)


async def open_incidents(
    session: AsyncSession, *, closed: Sequence[str]
) -> Sequence[StatusIncident]:
    """The status-page incidents not in a `closed` status, newest first (a handful at most:
    they are what Visma has open right now)."""
    rows = await session.execute(_OPEN_INCIDENTS, {"closed": list(closed)})
    return rows.scalars().all()


async def incidents_by_id(
    session: AsyncSession, incident_ids: Sequence[str]
) -> dict[str, StatusIncident]:
    ids = [i for i in set(incident_ids) if i]
    if not ids:
        return {}
    query = select(StatusIncident).where(StatusIncident.id.in_(ids))
    return {i.id: i for i in (await session.execute(query)).scalars()}


__all__ = [
    "CountedFailure",
    "count_failure",
    "get_issue",
    "incidents_by_id",
    "list_issues",
    "open_incidents",
    "set_issue_state",
]
