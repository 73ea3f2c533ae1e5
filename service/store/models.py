"""Tables: jobs and their timeline, the delivery inbox, status-page state, alerts and their
outbox. Timestamps are UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    func,
    null,
    text,
)
from sqlalchemy.dialects import postgresql
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


class CompanyBudgetRecord(Base):
    """A company's Visma rate budget as a replica last heard it, so that a process that starts
    (a restart, the CLI) does not start from "nothing known", which always sends. Times are
    wall-clock instants; `sharers` is how many spend the budget at a replica's pace."""

    __tablename__ = "company_budgets"

    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    limit: Mapped[int | None] = mapped_column(Integer)
    remaining: Mapped[int | None] = mapped_column(Integer)
    reset_at: Mapped[datetime | None]
    paused_until: Mapped[datetime | None]
    sharers: Mapped[float] = mapped_column(Float)
    recorded_at: Mapped[datetime]


class AuthFailureWindow(Base):
    """Failed authentications from one client address in its current minute, shared by every
    worker and replica (`address` "*" counts all of them). `started` is the window's first
    failure, in seconds since the epoch; a row older than a minute counts nothing."""

    __tablename__ = "auth_failures"

    address: Mapped[str] = mapped_column(String(64), primary_key=True)
    started: Mapped[float] = mapped_column(Float)
    failures: Mapped[int] = mapped_column(Integer)


class DashboardSession(Base):
    """One dashboard login, until it is logged out (the row is deleted) or expires (retention
    removes it). The row alone opens nothing: it holds no session id and no token."""

    __tablename__ = "dashboard_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    """SHA-256 (hex) of the session id the cookie carries."""
    token_fingerprint: Mapped[str] = mapped_column(String(64))
    """An HMAC of the session id keyed with the API token it was made with: each request checks
    it against the configured tokens, so a token taken out of the settings ends its sessions."""
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)


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


class Delivery(Base):
    """A webhook delivery exactly as it arrived (the inbox); unique on its notification id."""

    __tablename__ = "deliveries"
    __mapper_args__ = {"eager_defaults": False}  # as for jobs

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
    # The company the delivery says it is for (x-vwd-tenant-id, not signed).
    tenant_id: Mapped[str | None] = mapped_column(Text, server_default=null())


class PurgedNotification(Base):
    """The notification id of a delivery that retention removed while the dispatcher might
    still send it again: the inbox keeps refusing it as a duplicate until `received_at` is
    older than the dedupe window."""

    __tablename__ = "purged_notifications"

    notification_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(index=True)


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


class Alert(Base):
    """An alert raised by a transition; `body` is what JSON hooks receive.

    `pending` alerts go out once `due_at` passes (a held alert waits for its noise window to
    close); the sender then fans each out into one `AlertDelivery` per target.
    """

    __tablename__ = "alerts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    subject: Mapped[str] = mapped_column(String(200), index=True)
    summary: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime]
    raised_at: Mapped[datetime] = mapped_column(server_default=func.now(), index=True)
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16))
    due_at: Mapped[datetime | None]
    dispatched_at: Mapped[datetime | None]

    __table_args__ = (Index("ix_alerts_state_due_at", "state", "due_at"),)


class AlertDelivery(Base):
    """The outbox: one alert for one target, retried with backoff until sent or given up.

    A job's callback is a delivery of the same outbox with no alert: it names its job (and
    goes with it) and carries the body it sends, the job's JSON when it ended. A forwarded
    Visma event is one too: it names its inbox delivery (and goes with it), whose body it
    sends verbatim; one per delivery and target."""

    __tablename__ = "alert_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    alert_id: Mapped[str | None] = mapped_column(
        ForeignKey("alerts.id", ondelete="CASCADE"), index=True
    )
    job_id: Mapped[str | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), index=True
    )
    inbox_delivery_id: Mapped[str | None] = mapped_column(
        ForeignKey("deliveries.id", ondelete="CASCADE")
    )
    """For a forwarded event (channel `forward`): the inbox delivery it forwards."""
    body: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    channel: Mapped[str] = mapped_column(String(16))
    target: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Due work, kept in the row so a retry survives a restart; a claim pushes it forward as
    # its lease.
    next_attempt_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]

    __table_args__ = (
        Index("ix_alert_deliveries_state_next_attempt_at", "state", "next_attempt_at"),
        UniqueConstraint("inbox_delivery_id", "target"),
    )


class AlertAttempt(Base):
    """One try at sending an alert delivery, and how the target answered."""

    __tablename__ = "alert_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    delivery_id: Mapped[int] = mapped_column(
        ForeignKey("alert_deliveries.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime]
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    answer: Mapped[str | None] = mapped_column(Text)


class AlertWindow(Base):
    """A noise window (a component's flaps, or a fault code's burst of failed jobs)."""

    __tablename__ = "alert_windows"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    until: Mapped[datetime | None]
    told: Mapped[str | None] = mapped_column(String(32))
    count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    subjects: Mapped[list[Any]] = mapped_column(JSON, default=list)
    held_alert_id: Mapped[str | None] = mapped_column(ForeignKey("alerts.id", ondelete="SET NULL"))
