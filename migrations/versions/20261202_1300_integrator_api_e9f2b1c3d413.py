"""The integrator's API: kept results, per-job callbacks.

`job_results` keeps what a finished job's request returned (status, headers, content up to
MAX_RESULT_BYTES) after Visma forgets the job; it goes with its job. `job_callbacks` holds
where a job's JSON is POSTed when it ends (most jobs have none, so not a column of `jobs`); the POST is a delivery of the alert outbox that
names its job (`alert_deliveries.job_id`, with the `body` it sends) instead of an alert, so
`alert_id` may now be empty. The foreign keys cascade: retention deleting a job takes its
result, its callback, its callback deliveries and their attempts.

Revision ID: e9f2b1c3d413
Revises: d8e1a0b2c310 (chained after issue-10's companies when the branches met)
Create Date: 2026-12-02 13:00:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "e9f2b1c3d413"
down_revision: str | None = "d8e1a0b2c310"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "job_results",
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("content_type", sa.Text(), nullable=True),
        sa.Column("content", sa.LargeBinary(), nullable=True),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("truncated", sa.Boolean(), nullable=False),
        sa.Column("stored_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_job_results_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("job_id", name=op.f("pk_job_results")),
    )
    op.create_table(
        "job_callbacks",
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_job_callbacks_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("job_id", name=op.f("pk_job_callbacks")),
    )
    with op.batch_alter_table("alert_deliveries", schema=None) as batch_op:
        batch_op.alter_column("alert_id", existing_type=sa.String(length=36), nullable=True)
        batch_op.add_column(sa.Column("job_id", sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column("body", sa.JSON(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_alert_deliveries_job_id_jobs"),
            "jobs",
            ["job_id"],
            ["id"],
            ondelete="CASCADE",
        )
        batch_op.create_index(batch_op.f("ix_alert_deliveries_job_id"), ["job_id"], unique=False)


def downgrade() -> None:
    op.execute("DELETE FROM alert_deliveries WHERE alert_id IS NULL")
    with op.batch_alter_table("alert_deliveries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alert_deliveries_job_id"))
        batch_op.drop_constraint(batch_op.f("fk_alert_deliveries_job_id_jobs"), type_="foreignkey")
        batch_op.drop_column("body")
        batch_op.drop_column("job_id")
        batch_op.alter_column("alert_id", existing_type=sa.String(length=36), nullable=False)
    op.drop_table("job_callbacks")
    op.drop_table("job_results")
