"""Issues: failures grouped by cause, and each job's issue.

`issues` holds one row per cause (company, outcome, fault code or HTTP status or expiry reason,
method, path template), unique on a SHA-256 of it, so replicas recording failures of one cause
at once count them on the same row. `jobs.issue_id` names the issue a failed, rejected or
expired job belongs to (no foreign key: retention removes old jobs, the issue stays).

Revision ID: c4a0c0de2201
Revises: c3a0c0de2401
Create Date: 2026-12-08 00:30:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c4a0c0de2201"
down_revision: str | None = "c3a0c0de2401"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "issues",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("cause_key", sa.String(length=64), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("fault_code", sa.String(length=64), nullable=True),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("expiry_reason", sa.String(length=32), nullable=True),
        sa.Column("method", sa.String(length=8), nullable=False),
        sa.Column("path_template", sa.Text(), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("hint", sa.Text(), nullable=True),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("job_count", sa.Integer(), nullable=False),
        sa.Column("first_job_id", sa.String(length=36), nullable=True),
        sa.Column("opened_by_job_id", sa.String(length=36), nullable=True),
        sa.Column("incident_id", sa.String(length=64), nullable=True),
        sa.Column("state_changed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_issues")),
        sa.UniqueConstraint("cause_key", name=op.f("uq_issues_cause_key")),
    )
    op.create_index("ix_issues_last_seen_at_id", "issues", ["last_seen_at", "id"])
    op.create_index("ix_issues_state_last_seen_at_id", "issues", ["state", "last_seen_at", "id"])
    op.create_index("ix_issues_tenant_last_seen_at_id", "issues", ["tenant", "last_seen_at", "id"])
    # Plain ADD COLUMN, which SQLite does in place: a batch copy of `jobs` would drop its
    # job-count triggers.
    op.add_column("jobs", sa.Column("issue_id", sa.String(length=36), server_default=sa.null()))
    op.create_index(
        "ix_jobs_issue_id_submitted_at_id", "jobs", ["issue_id", "submitted_at", "id"]
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_issue_id_submitted_at_id", table_name="jobs")
    op.drop_column("jobs", "issue_id")
    op.drop_index("ix_issues_tenant_last_seen_at_id", table_name="issues")
    op.drop_index("ix_issues_state_last_seen_at_id", table_name="issues")
    op.drop_index("ix_issues_last_seen_at_id", table_name="issues")
    op.drop_table("issues")
