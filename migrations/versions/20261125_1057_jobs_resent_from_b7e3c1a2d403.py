"""Jobs re-sent deliberately name the job they replace.

Revision ID: b7e3c1a2d403
Revises: 2e0f01b2a152
Create Date: 2026-11-25 10:57:24.414143+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "b7e3c1a2d403"
down_revision: str | None = "2e0f01b2a152"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("resent_from", sa.String(length=36), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("resent_from")
