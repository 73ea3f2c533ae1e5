"""Bulk operations, and the job each job was re-sent as.

`operations` holds one row per bulk operation (an issue's jobs resent, a window of deliveries
replayed): its progress, and the lease of the replica running it. `jobs.resent_as` names the
job that re-sent a job, written with the new job, so no job is re-sent twice.

Revision ID: c5a0c0de2202
Revises: c4a0c0de2201
Create Date: 2026-12-08 01:00:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c5a0c0de2202"
down_revision: str | None = "c4a0c0de2201"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "operations",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("origin", sa.JSON(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("cursor", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("snapshot_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operations")),
    )
    op.create_index("ix_operations_state_created_at", "operations", ["state", "created_at"])
    # Plain ADD COLUMN, which SQLite does in place: a batch copy of `jobs` would drop its
    # job-count triggers.
    op.add_column("jobs", sa.Column("resent_as", sa.String(length=36), server_default=sa.null()))


def downgrade() -> None:
    op.drop_column("jobs", "resent_as")
    op.drop_index("ix_operations_state_created_at", table_name="operations")
    op.drop_table("operations")
