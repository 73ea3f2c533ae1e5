"""Dashboard sessions as rows, so logging out ends a session on every replica.

`dashboard_sessions` holds one row per login: its primary key is a SHA-256 of the session id
the cookie carries (the table alone opens no session), with a fingerprint of the API token it
was made with (never the token) and when it expires. Logging out deletes the row; retention
removes the rows that have expired.

Revision ID: b1a0c0de2701
Revises: a7f2c0de2101
Create Date: 2026-12-07 21:00:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "b1a0c0de2701"
down_revision: str | None = "a7f2c0de2101"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dashboard_sessions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("token_fingerprint", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dashboard_sessions")),
    )
    op.create_index(
        op.f("ix_dashboard_sessions_expires_at"),
        "dashboard_sessions",
        ["expires_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_dashboard_sessions_expires_at"), table_name="dashboard_sessions")
    op.drop_table("dashboard_sessions")
