"""Status-page state and history. Functions take a session and never commit."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, and_, delete, func, inspect, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase

from service.store.models import (
    StatusComponent,
    StatusComponentUpdate,
    StatusIncident,
    StatusIncidentComponent,
    StatusIncidentUpdate,
)

_Row = TypeVar("_Row", bound=DeclarativeBase)


async def lock_component(session: AsyncSession, component_id: str) -> StatusComponent:
    """The component's row, created if new, locked until the transaction ends."""
    await insert_ignore(session, StatusComponent, [{"id": component_id}])
    return await _locked(session, select(StatusComponent).where(StatusComponent.id == component_id))


async def add_component_update(session: AsyncSession, values: Mapping[str, Any]) -> bool:
    """Keep one `component_update` in the history; False if its id was already kept."""
    return bool(await insert_ignore(session, StatusComponentUpdate, [values]))


async def list_components(
    session: AsyncSession,
    *,
    statuses: Sequence[str] = (),
    component: str | None = None,
    limit: int,
    offset: int,
) -> tuple[Sequence[StatusComponent], int]:
    """One page of components by name, and the total count."""
    conditions: list[ColumnElement[bool]] = []
    if statuses:
        conditions.append(StatusComponent.status.in_(statuses))
    if component:
        conditions.append(
            or_(
                StatusComponent.id == component,
                func.lower(StatusComponent.name) == component.lower(),
            )
        )
    query = select(StatusComponent).order_by(StatusComponent.name, StatusComponent.id)
    return await _page(session, query, StatusComponent, conditions, limit=limit, offset=offset)


async def component_history(
    session: AsyncSession, component_ids: Sequence[str]
) -> dict[str, list[StatusComponentUpdate]]:
    """Each component's updates, newest first."""
    history: dict[str, list[StatusComponentUpdate]] = defaultdict(list)
    if not component_ids:
        return history
    query = (
        select(StatusComponentUpdate)
        .where(StatusComponentUpdate.component_id.in_(component_ids))
        .order_by(StatusComponentUpdate.at.desc(), StatusComponentUpdate.id)
    )
    for update in (await session.execute(query)).scalars():
        history[update.component_id].append(update)
    return history


async def get_component(session: AsyncSession, component_id: str) -> StatusComponent | None:
    """The component with this id, if known."""
    return await session.get(StatusComponent, component_id)


async def lock_incident(session: AsyncSession, incident_id: str) -> StatusIncident:
    """The incident's row, created if new, locked until the transaction ends."""
    await insert_ignore(session, StatusIncident, [{"id": incident_id, "components": []}])
    return await _locked(session, select(StatusIncident).where(StatusIncident.id == incident_id))


async def add_incident_updates(session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> int:
    """Keep the incident updates not kept yet; returns how many were new."""
    return await insert_ignore(session, StatusIncidentUpdate, rows)


async def set_incident_components(
    session: AsyncSession, incident_id: str, components: Sequence[tuple[str, str | None]]
) -> None:
    """Replace the set of components an incident affects."""
    await session.execute(
        delete(StatusIncidentComponent).where(StatusIncidentComponent.incident_id == incident_id)
    )
    if components:
        await insert_ignore(
            session,
            StatusIncidentComponent,
            [{"incident_id": incident_id, "component_id": c, "name": n} for c, n in components],
        )


async def list_incidents(
    session: AsyncSession,
    *,
    statuses: Sequence[str] = (),
    component: str | None = None,
    limit: int,
    offset: int,
) -> tuple[Sequence[StatusIncident], int]:
    """One page of incidents, most recently updated first, and the total count."""
    conditions: list[ColumnElement[bool]] = []
    if statuses:
        conditions.append(StatusIncident.status.in_(statuses))
    if component:
        affected = select(StatusIncidentComponent.incident_id).where(
            or_(
                StatusIncidentComponent.component_id == component,
                func.lower(StatusIncidentComponent.name) == component.lower(),
            )
        )
        conditions.append(StatusIncident.id.in_(affected))
    query = select(StatusIncident).order_by(
        StatusIncident.updated_at.desc(), StatusIncident.id.desc()
    )
    return await _page(session, query, StatusIncident, conditions, limit=limit, offset=offset)


async def incident_updates(
    session: AsyncSession, incident_ids: Sequence[str]
) -> dict[str, list[StatusIncidentUpdate]]:
    """Each incident's updates, newest first."""
    updates: dict[str, list[StatusIncidentUpdate]] = defaultdict(list)
    if not incident_ids:
        return updates
    query = (
        select(StatusIncidentUpdate)
        .where(StatusIncidentUpdate.incident_id.in_(incident_ids))
        .order_by(StatusIncidentUpdate.at.desc(), StatusIncidentUpdate.id)
    )
    for update in (await session.execute(query)).scalars():
        updates[update.incident_id].append(update)
    return updates


async def insert_ignore(
    session: AsyncSession, model: type[DeclarativeBase], rows: Sequence[Mapping[str, Any]]
) -> int:
    """Insert rows, skipping any whose key exists (also one a concurrent transaction holds:
    PostgreSQL waits for it, then skips). Returns how many were inserted."""
    if not rows:
        return 0
    postgres = session.get_bind().dialect.name == "postgresql"
    insert = pg_insert if postgres else sqlite_insert
    key = inspect(model).primary_key[0]
    statement = insert(model).values(list(rows)).on_conflict_do_nothing().returning(key)
    return len((await session.execute(statement)).all())


async def _locked(session: AsyncSession, query: Select[_Row]) -> _Row:
    # populate_existing: the row may be in the identity map from before the lock was taken.
    locked = query.with_for_update().execution_options(populate_existing=True)
    return (await session.execute(locked)).scalar_one()


async def _page(
    session: AsyncSession,
    query: Select[_Row],
    model: type[_Row],
    conditions: list[ColumnElement[bool]],
    *,
    limit: int,
    offset: int,
) -> tuple[Sequence[_Row], int]:
    count_query = select(func.count()).select_from(model)
    if conditions:
        count_query = count_query.where(and_(*conditions))
        query = query.where(and_(*conditions))
    total = (await session.execute(count_query)).scalar_one()
    rows = (await session.execute(query.limit(limit).offset(offset))).scalars().all()
    return rows, total
