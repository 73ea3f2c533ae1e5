"""Jobs, their timeline and what each keeps: result, callback, idempotency keys, and the
per-state counts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    false,
    func,
    null,
    text,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Mapped, mapped_column

from service.store.models.base import Base

# Only jobs with a state read scheduled: open ones (a finished job's next_check_at is cleared).
# `next_check_at <= :now` implies it, with or without bound parameters, on both databases.
DUE_INDEX_WHERE = "next_check_at IS NOT NULL"


class Job(Base):
    """A request we sent (or are sending) to Visma as a background call."""

    __tablename__ = "jobs"
    # Server defaults are not read back after an insert: the newer columns stay out of an
    # insert that does not name them (older schemas, in the migration tests, lack them).
    __mapper_args__ = {"eager_defaults": False}

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    # Unique: a Visma job belongs to one job (a webhook never hands it to a second).
    visma_job_id: Mapped[str | None] = mapped_column(String(64), index=True, unique=True)
    state: Mapped[str] = mapped_column(String(16))
    method: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(Text)
    request_body: Mapped[bytes | None] = mapped_column(LargeBinary)
    # jsonb on PostgreSQL: a tag filter reads it without parsing each row's text.
    tags: Mapped[dict[str, Any]] = mapped_column(
        JSON().with_variant(postgresql.JSONB(), "postgresql"), default=dict
    )
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
    # A job a person re-sent deliberately (`submit --resend`) names the job it replaces.
    resent_from: Mapped[str | None] = mapped_column(String(36))
    # The company (Visma tenant) the job is for; NULL for jobs stored before there were
    # several, which belong to the default company (the first of VISMA_TENANT_ID). Server-side
    # defaults only (here and below): an insert that does not name the column leaves it out.
    tenant: Mapped[str | None] = mapped_column(String(64), server_default=null())
    # The request has not been sent yet: its company's rate budget made it wait. It goes out
    # at `next_check_at` (a 429 proves Visma did not process it, so sending later is safe).
    send_pending: Mapped[bool] = mapped_column(Boolean, server_default=false())
    # The Idempotency-Key the job was created with, as the job JSON shows it (the key's claim,
    # which makes a repeat answer this job, is `idempotency_keys`, kept for fewer days).
    idempotency_key: Mapped[str | None] = mapped_column(String(255), server_default=null())
    # The W3C trace context of the job's submission (OpenTelemetry, when tracing is on): its
    # state reads and its callback join that trace. 55 characters: version 00's traceparent.
    traceparent: Mapped[str | None] = mapped_column(String(55), server_default=null())
    # The issue (`issues`) the job's failure belongs to; set with its outcome, in the same
    # transaction. No foreign key: retention deletes old jobs, the issue keeps its count.
    issue_id: Mapped[str | None] = mapped_column(String(36), server_default=null())
    # The job that re-sent this one (`resent_from`'s other end), written in the transaction
    # that makes the new job: a bulk resend takes only jobs without one, so never twice.
    resent_as: Mapped[str | None] = mapped_column(String(36), server_default=null())

    __table_args__ = (
        # The job list pages newest first (submitted_at DESC, id DESC), often for one state:
        # with id in the index a page is read in order and the count is an index-only scan.
        Index("ix_jobs_state_submitted_at_id", "state", "submitted_at", "id"),
        Index("ix_jobs_submitted_at_id", "submitted_at", "id"),
        Index("ix_jobs_tenant_submitted_at_id", "tenant", "submitted_at", "id"),
        # The poller's due work: only jobs with a read scheduled, so the index stays as small as
        # the set of open jobs however many finished ones the table holds.
        Index(
            "ix_jobs_due",
            "next_check_at",
            postgresql_where=text(DUE_INDEX_WHERE),
            sqlite_where=text(DUE_INDEX_WHERE),
        ),
        # A tag filter's count, from the index alone (SQLite; PostgreSQL's jsonb suffices and
        # its btree entries would limit the tags' size: migration a4e0c8d9b011 says why).
        Index("ix_jobs_state_tags", "state", "tags").ddl_if(dialect="sqlite"),
        # Retention takes finished jobs oldest first (open jobs have no finished_at).
        Index("ix_jobs_finished_at", "finished_at"),
        # An issue's jobs, newest first.
        Index("ix_jobs_issue_id_submitted_at_id", "issue_id", "submitted_at", "id"),
    )


class JobResult(Base):
    """What a finished job's request returned, kept after Visma forgets it (24 hours); it goes
    with its job (retention deletes the job, the foreign key cascades)."""

    __tablename__ = "job_results"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    status: Mapped[int | None] = mapped_column(Integer)
    headers: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    content_type: Mapped[str | None] = mapped_column(Text)
    content: Mapped[bytes | None] = mapped_column(LargeBinary)
    # The content's size as Visma returned it; `truncated` when only MAX_RESULT_BYTES are kept.
    size: Mapped[int] = mapped_column(Integer, default=0)
    truncated: Mapped[bool] = mapped_column(Boolean, default=False)
    stored_at: Mapped[datetime]


class JobCallback(Base):
    """Where a job's JSON is POSTed when it ends (a table of its own, so the jobs table and its
    queries stay as they are for the jobs that have none, which are most)."""

    __tablename__ = "job_callbacks"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    url: Mapped[str] = mapped_column(Text)


class IdempotencyKey(Base):
    """An Idempotency-Key a company's request was made with, and the job it made: a repeat of
    the key answers that job instead of sending anything. The primary key makes a key one job
    per company on every database and across replicas; a key goes after IDEMPOTENCY_KEY_DAYS
    (retention), or with its job."""

    __tablename__ = "idempotency_keys"

    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    """The company; '' when none is configured."""
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    """SHA-256 of the canonical request: a repeat must be the same request."""
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(index=True)


class JobStateCount(Base):
    """A change to the number of jobs in one state; the sum per state is the count.

    Database triggers on `jobs` add a row for every insert, state change and delete (migration
    f2c8a6b7e807), so the count is exact whichever code path writes a job, and writers only
    ever insert here (no counter row that every transition would queue for). Housekeeping folds
    the rows into one per state now and then (`store.compact_job_counts`).
    """

    __tablename__ = "job_state_counts"

    # Five or so rows per job, and each fold takes new ids: 64 bits (SQLite's rowid is already).
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    state: Mapped[str] = mapped_column(String(16))
    delta: Mapped[int] = mapped_column(Integer)


class JobEvent(Base):
    """One entry of a job's timeline: what happened, when, and who said so."""

    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(server_default=func.now())
    kind: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(16))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)
