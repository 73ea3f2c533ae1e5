"""The job's trace context, so a job's later work joins the trace that submitted it.

`jobs.traceparent` holds the W3C `traceparent` of the job's submission when tracing is on
(NULL otherwise): its state reads, its outcome and its callback continue that trace, and the
submission carries it to Visma in a subscription pair that the webhook brings back.

Revision ID: c3a0c0de2401
Revises: c1a0c0de2704
Create Date: 2026-12-08 00:10:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c3a0c0de2401"
down_revision: str | None = "c1a0c0de2704"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("traceparent", sa.String(length=55), server_default=sa.null()))


def downgrade() -> None:
    # A plain DROP COLUMN (SQLite has it): a batch copy of `jobs` would lose its triggers.
    op.drop_column("jobs", "traceparent")
