"""The status page's state: components, incidents and their updates."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, String, Text, false, func
from sqlalchemy.orm import Mapped, mapped_column

from service.store.models.base import Base


class StatusComponent(Base):
    """A status-page component: its current status, set by the newest update seen."""

    __tablename__ = "status_components"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str | None] = mapped_column(Text)
    group_id: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str | None] = mapped_column(String(32), index=True)
    # The `created_at` of the update that set `status`; an older update never replaces it.
    updated_at: Mapped[datetime | None]
    first_seen_at: Mapped[datetime] = mapped_column(server_default=func.now())


class StatusComponentUpdate(Base):
    """One `component_update` (the component's history), kept even when it arrived late."""

    __tablename__ = "status_component_updates"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    component_id: Mapped[str] = mapped_column(
        ForeignKey("status_components.id", ondelete="CASCADE"), index=True
    )
    old_status: Mapped[str | None] = mapped_column(String(32))
    new_status: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime]
    received_at: Mapped[datetime] = mapped_column(index=True)
    # False when a newer update had already set the status (a late or repeated delivery).
    applied: Mapped[bool] = mapped_column(Boolean)
    # `at` was beyond STATUS_CLOCK_SKEW_SECONDS ahead of us: ordered by `received_at` instead.
    future_dated: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class StatusIncident(Base):
    """A status-page incident or scheduled maintenance, as its newest delivery showed it."""

    __tablename__ = "status_incidents"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str | None] = mapped_column(String(32), index=True)
    impact: Mapped[str | None] = mapped_column(String(32))
    shortlink: Mapped[str | None] = mapped_column(Text)
    maintenance: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime | None]
    updated_at: Mapped[datetime | None] = mapped_column(index=True)
    # The newest delivery's time was too far ahead of us: `updated_at` is when we received it.
    future_dated: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    resolved_at: Mapped[datetime | None]
    scheduled_for: Mapped[datetime | None]
    scheduled_until: Mapped[datetime | None]
    components: Mapped[list[Any]] = mapped_column(JSON, default=list)
    first_seen_at: Mapped[datetime] = mapped_column(server_default=func.now())


class StatusIncidentUpdate(Base):
    """One of an incident's `incident_updates`; the union over every delivery."""

    __tablename__ = "status_incident_updates"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    incident_id: Mapped[str] = mapped_column(
        ForeignKey("status_incidents.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(String(32))
    body: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime]


class StatusIncidentComponent(Base):
    """Which components an incident affects (for the `component` filter)."""

    __tablename__ = "status_incident_components"

    incident_id: Mapped[str] = mapped_column(
        ForeignKey("status_incidents.id", ondelete="CASCADE"), primary_key=True
    )
    component_id: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)
    name: Mapped[str | None] = mapped_column(Text)
