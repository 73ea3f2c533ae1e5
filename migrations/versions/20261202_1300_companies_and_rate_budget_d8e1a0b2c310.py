"""Many companies: each job names its company (tenant), each delivery the company it says it is
for, and a job whose request waits for its company's rate budget is marked as not yet sent.

Jobs stored before this revision were all sent with the one tenant of their time, which the
migration cannot know: their `tenant` stays NULL, and the service shows and treats NULL as the
default company (the first of `VISMA_TENANT_ID`).

Revision ID: d8e1a0b2c310
Revises: c7a2e4f1d223
Create Date: 2026-12-02 13:00:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "d8e1a0b2c310"
down_revision: str | None = "c7a2e4f1d223"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ADD COLUMN, which SQLite does in place: a batch copy of `jobs` would drop its
    # job-count triggers.
    op.add_column(
        "jobs",
        sa.Column("tenant", sa.String(length=64), nullable=True, server_default=sa.null()),
    )
    op.add_column(
        "jobs",
        sa.Column("send_pending", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.create_index(
        op.f("ix_jobs_tenant_submitted_at_id"), "jobs", ["tenant", "submitted_at", "id"]
    )
    op.add_column(
        "deliveries", sa.Column("tenant_id", sa.Text(), nullable=True, server_default=sa.null())
    )


def downgrade() -> None:
    # DROP COLUMN in place too (SQLite 3.35+), for the same reason.
    op.drop_column("deliveries", "tenant_id")
    op.drop_index(op.f("ix_jobs_tenant_submitted_at_id"), table_name="jobs")
    op.drop_column("jobs", "send_pending")
    op.drop_column("jobs", "tenant")
