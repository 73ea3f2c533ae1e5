"""Status-page updates dated too far ahead of us are flagged, not ordered by their time.

`status_component_updates.future_dated` marks an update whose `at` was more than
STATUS_CLOCK_SKEW_SECONDS ahead of our clock when it arrived: it was ordered by `received_at`
instead (one dated 2099 had frozen its component). `status_incidents.future_dated` says the
same of the incident's newest delivery (its `updated_at` is then our receipt time).

Revision ID: c1a0c0de2704
Revises: b1a0c0de2701
Create Date: 2026-12-08 00:10:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c1a0c0de2704"
down_revision: str | None = "b1a0c0de2701"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for table in ("status_component_updates", "status_incidents"):
        with op.batch_alter_table(table) as batch_op:
            batch_op.add_column(
                sa.Column("future_dated", sa.Boolean(), server_default=sa.false(), nullable=False)
            )


def downgrade() -> None:
    for table in ("status_component_updates", "status_incidents"):
        with op.batch_alter_table(table) as batch_op:
            batch_op.drop_column("future_dated")
