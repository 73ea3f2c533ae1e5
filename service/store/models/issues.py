"""Issues (failures grouped by cause) and the bulk operations that resend or replay."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from service.store.models.base import Base


class Operation(Base):
    """A bulk operation (an issue's jobs resent, deliveries replayed): run by one replica at
    a time under a lease, in steps that each commit their progress."""

    __tablename__ = "operations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    # What it works on: {"issueId"} for a resend; {"since", "until", "tenant"} for a replay.
    origin: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    total: Mapped[int] = mapped_column(Integer, default=0)
    done: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    # Where the next step starts (a replay's last delivery id), so a new owner goes on there.
    cursor: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    # A resend takes the jobs that were there when it started, never the ones it made.
    snapshot_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_operations_state_created_at", "state", "created_at"),)


class Issue(Base):
    """Failures of one cause (company, outcome, fault code or status or expiry reason, method,
    path template): one row however many jobs failed so, counted as they are recorded."""

    __tablename__ = "issues"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    # SHA-256 of the cause: one issue per cause, enforced by the database on every replica.
    cause_key: Mapped[str] = mapped_column(String(64), unique=True)
    tenant: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    fault_code: Mapped[str | None] = mapped_column(String(64))
    http_status: Mapped[int | None] = mapped_column(Integer)
    expiry_reason: Mapped[str | None] = mapped_column(String(32))
    method: Mapped[str] = mapped_column(String(8))
    path_template: Mapped[str] = mapped_column(Text)
    message: Mapped[str | None] = mapped_column(Text)
    hint: Mapped[str | None] = mapped_column(Text)
    first_seen_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    job_count: Mapped[int] = mapped_column(Integer)
    first_job_id: Mapped[str | None] = mapped_column(String(36))
    # The job whose failure last made the issue open (it was new, or it was resolved): the
    # writer that finds its own job here after the upsert raises the issue's alert, once.
    opened_by_job_id: Mapped[str | None] = mapped_column(String(36))
    incident_id: Mapped[str | None] = mapped_column(String(64))
    state_changed_at: Mapped[datetime | None]
    resolved_at: Mapped[datetime | None]

    __table_args__ = (
        Index("ix_issues_last_seen_at_id", "last_seen_at", "id"),
        Index("ix_issues_state_last_seen_at_id", "state", "last_seen_at", "id"),
        Index("ix_issues_tenant_last_seen_at_id", "tenant", "last_seen_at", "id"),
    )
