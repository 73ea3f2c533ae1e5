"""Jobs, their event timeline, and the delivery inbox.

Revision ID: 2e0f01b2a152
Revises:
Create Date: 2026-11-25 10:39:48.829079+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "2e0f01b2a152"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("visma_job_id", sa.String(length=64), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("method", sa.String(length=8), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("request_body", sa.LargeBinary(), nullable=True),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("if_match", sa.Text(), nullable=True),
        sa.Column("notify", sa.Boolean(), nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("created_resource_id", sa.Text(), nullable=True),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("hint", sa.Text(), nullable=True),
        sa.Column("resolved_by", sa.String(length=16), nullable=True),
        sa.Column("result_etag", sa.Text(), nullable=True),
        sa.Column(
            "submitted_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.now(),
            nullable=False,
        ),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "last_modified_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.now(),
            nullable=False,
        ),
        sa.Column("last_webhook_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_check_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("check_attempts", sa.Integer(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_jobs_last_modified_at"), ["last_modified_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_jobs_next_check_at"), ["next_check_at"], unique=False)
        batch_op.create_index("ix_jobs_state_submitted_at", ["state", "submitted_at"], unique=False)
        batch_op.create_index("ix_jobs_submitted_at", ["submitted_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_jobs_visma_job_id"), ["visma_job_id"], unique=False)

    op.create_table(
        "deliveries",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("notification_id", sa.String(length=128), nullable=True),
        sa.Column("event_id", sa.String(length=128), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("verified", sa.Boolean(), nullable=False),
        sa.Column("job_id", sa.String(length=36), nullable=True),
        sa.Column("claimed_job_id", sa.String(length=128), nullable=True),
        sa.Column("visma_job_id", sa.String(length=64), nullable=True),
        sa.Column("problem", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_deliveries_job_id_jobs"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deliveries")),
        sa.UniqueConstraint("notification_id", name=op.f("uq_deliveries_notification_id")),
    )
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_deliveries_job_id"), ["job_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_deliveries_received_at"), ["received_at"], unique=False
        )

    op.create_table(
        "job_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column(
            "at",
            sa.DateTime(timezone=True),
            server_default=sa.func.now(),
            nullable=False,
        ),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_job_events_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_events")),
    )
    with op.batch_alter_table("job_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_job_events_job_id"), ["job_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("job_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_job_events_job_id"))

    op.drop_table("job_events")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_deliveries_received_at"))
        batch_op.drop_index(batch_op.f("ix_deliveries_job_id"))

    op.drop_table("deliveries")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_jobs_visma_job_id"))
        batch_op.drop_index("ix_jobs_submitted_at")
        batch_op.drop_index("ix_jobs_state_submitted_at")
        batch_op.drop_index(batch_op.f("ix_jobs_next_check_at"))
        batch_op.drop_index(batch_op.f("ix_jobs_last_modified_at"))

    op.drop_table("jobs")
