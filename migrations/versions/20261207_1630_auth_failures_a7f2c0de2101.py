"""Failed authentications per client address and minute, so every worker and replica holds
back an address that guesses tokens (the dashboard login and `/api/` bearer tokens).

Revision ID: a7f2c0de2101
Revises: f5a0c0de2801
Create Date: 2026-12-07 16:30:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a7f2c0de2101"
down_revision: str | None = "f5a0c0de2801"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "auth_failures",
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("started", sa.Float(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("address", name=op.f("pk_auth_failures")),
    )


def downgrade() -> None:
    op.drop_table("auth_failures")
