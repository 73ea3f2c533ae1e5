"""Retention: what purging needs to find old rows fast, and the notification ids it keeps.

`purged_notifications` holds the notification id of each delivery retention removes while the
Visma dispatcher may still retry it, so the inbox goes on refusing it as a duplicate. Indexes
let retention take finished jobs and status history oldest first. On PostgreSQL, autovacuum
looks at the inbox and the jobs sooner (2% of rows dead instead of 20%): retention deletes
steadily, and the space is only reused once vacuum has seen it.

Revision ID: c7a2e4f1d223
Revises: b5f1d9e0c112
Create Date: 2026-12-02 06:00:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c7a2e4f1d223"
down_revision: str | None = "b5f1d9e0c112"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_VACUUM_SOONER = ("deliveries", "jobs", "job_events")


def upgrade() -> None:
    op.create_table(
        "purged_notifications",
        sa.Column("notification_id", sa.String(length=128), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("notification_id", name=op.f("pk_purged_notifications")),
    )
    op.create_index(
        op.f("ix_purged_notifications_received_at"), "purged_notifications", ["received_at"]
    )
    op.create_index(op.f("ix_jobs_finished_at"), "jobs", ["finished_at"])
    op.create_index(
        op.f("ix_status_component_updates_received_at"),
        "status_component_updates",
        ["received_at"],
    )
    if op.get_context().dialect.name == "postgresql":
        for table in _VACUUM_SOONER:
            op.execute(
                f"ALTER TABLE {table} SET (autovacuum_vacuum_scale_factor = 0.02, "
                "autovacuum_analyze_scale_factor = 0.02)"
            )


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        for table in _VACUUM_SOONER:
            op.execute(
                f"ALTER TABLE {table} RESET (autovacuum_vacuum_scale_factor, "
                "autovacuum_analyze_scale_factor)"
            )
    op.drop_index(
        op.f("ix_status_component_updates_received_at"), table_name="status_component_updates"
    )
    op.drop_index(op.f("ix_jobs_finished_at"), table_name="jobs")
    op.drop_index(op.f("ix_purged_notifications_received_at"), table_name="purged_notifications")
    op.drop_table("purged_notifications")
