"""Indexes for the job list (newest first, by state) and the poller's due work.

- `ix_jobs_state_submitted_at_id` and `ix_jobs_submitted_at_id` replace the indexes without
  `id`: the list orders by (submitted_at DESC, id DESC), so a page is read from the index in
  order, and a filtered count is an index-only scan.
- `ix_jobs_due` replaces `ix_jobs_next_check_at`: a partial index of the jobs with a state read
  scheduled (finished jobs have none), so the due-work query reads a few entries however many
  finished jobs the table holds. `next_check_at <= :now` implies its predicate, so both
  planners use it with bound parameters.

Revision ID: d9a5e3c4f605
Revises: c8f4d2b3e504
Create Date: 2026-11-25 11:15:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "d9a5e3c4f605"
down_revision: str | None = "c8f4d2b3e504"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEDULED = "next_check_at IS NOT NULL"


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_state_submitted_at")
        batch_op.drop_index("ix_jobs_submitted_at")
        batch_op.drop_index(batch_op.f("ix_jobs_next_check_at"))
        batch_op.create_index(
            "ix_jobs_state_submitted_at_id", ["state", "submitted_at", "id"], unique=False
        )
        batch_op.create_index("ix_jobs_submitted_at_id", ["submitted_at", "id"], unique=False)
        batch_op.create_index(
            "ix_jobs_due",
            ["next_check_at"],
            unique=False,
            postgresql_where=sa.text(SCHEDULED),
            sqlite_where=sa.text(SCHEDULED),
        )


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_due")
        batch_op.drop_index("ix_jobs_submitted_at_id")
        batch_op.drop_index("ix_jobs_state_submitted_at_id")
        batch_op.create_index(batch_op.f("ix_jobs_next_check_at"), ["next_check_at"], unique=False)
        batch_op.create_index("ix_jobs_submitted_at", ["submitted_at"], unique=False)
        batch_op.create_index("ix_jobs_state_submitted_at", ["state", "submitted_at"], unique=False)
