"""Tables: jobs, their event timeline, and the raw delivery inbox. Timestamps are UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "pk": "pk_%(table_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ix": "ix_%(column_0_label)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
}


# Only jobs with a state read scheduled: open ones (a finished job's next_check_at is cleared).
# `next_check_at <= :now` implies it, with or without bound parameters, on both databases.
DUE_INDEX_WHERE = "next_check_at IS NOT NULL"


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every database (SQLite stores them without a zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSON, datetime: UtcDateTime()}


class Job(Base):
    """A request we sent (or are sending) to Visma as a background call."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    visma_job_id: Mapped[str | None] = mapped_column(String(64), index=True)
    state: Mapped[str] = mapped_column(String(16))
    method: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(Text)
    request_body: Mapped[bytes | None] = mapped_column(LargeBinary)
    tags: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    if_match: Mapped[str | None] = mapped_column(Text)
    notify: Mapped[bool] = mapped_column(Boolean, default=True)
    http_status: Mapped[int | None] = mapped_column(Integer)
    created_resource_id: Mapped[str | None] = mapped_column(Text)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    hint: Mapped[str | None] = mapped_column(Text)
    resolved_by: Mapped[str | None] = mapped_column(String(16))
    result_etag: Mapped[str | None] = mapped_column(Text)
    submitted_at: Mapped[datetime] = mapped_column(server_default=func.now())
    accepted_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    last_modified_at: Mapped[datetime] = mapped_column(server_default=func.now(), index=True)
    last_webhook_at: Mapped[datetime | None]
    # Due work: when the job's Visma state should next be read (a webhook came, or polling).
    # A worker that claims the job pushes this forward, which is also its lease.
    next_check_at: Mapped[datetime | None]
    check_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    __table_args__ = (
        # The job list pages newest first (submitted_at DESC, id DESC), often for one state:
        # with id in the index a page is read in order and the count is an index-only scan.
        Index("ix_jobs_state_submitted_at_id", "state", "submitted_at", "id"),
        Index("ix_jobs_submitted_at_id", "submitted_at", "id"),
        # The poller's due work: only jobs with a read scheduled, so the index stays as small as
        # the set of open jobs however many finished ones the table holds.
        Index(
            "ix_jobs_due",
            "next_check_at",
            postgresql_where=text(DUE_INDEX_WHERE),
            sqlite_where=text(DUE_INDEX_WHERE),
        ),
    )


class JobEvent(Base):
    """One entry of a job's timeline: what happened, when, and who said so."""

    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(server_default=func.now())
    kind: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(16))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class Delivery(Base):
    """A webhook delivery exactly as it arrived (the inbox); unique on its notification id."""

    __tablename__ = "deliveries"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    notification_id: Mapped[str | None] = mapped_column(String(128), unique=True)
    event_id: Mapped[str | None] = mapped_column(String(128))
    received_at: Mapped[datetime] = mapped_column(index=True)
    headers: Mapped[dict[str, Any]] = mapped_column(JSON)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    verified: Mapped[bool] = mapped_column(Boolean)
    job_id: Mapped[str | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="SET NULL"), index=True
    )
    claimed_job_id: Mapped[str | None] = mapped_column(String(128))
    visma_job_id: Mapped[str | None] = mapped_column(String(64))
    problem: Mapped[str | None] = mapped_column(Text)
