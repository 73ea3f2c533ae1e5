"""Recorded rate budgets: each company's Visma budget as a replica last heard it.

A process that starts knows nothing of a budget until Visma's next answer, and "nothing known"
always sends: the CLI's one request, or a restarted replica's first ones, could earn a 429 on
a budget another replica knows is spent. Each replica records what it heard (housekeeping); a
process starting reads it back.

Revision ID: f5a0c0de2801
Revises: f1a0c0de2001
Create Date: 2026-12-07 14:00:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "f5a0c0de2801"
down_revision: str | None = "f1a0c0de2001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "company_budgets",
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("limit", sa.Integer(), nullable=True),
        sa.Column("remaining", sa.Integer(), nullable=True),
        sa.Column("reset_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("paused_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sharers", sa.Float(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant", name=op.f("pk_company_budgets")),
    )


def downgrade() -> None:
    op.drop_table("company_budgets")
