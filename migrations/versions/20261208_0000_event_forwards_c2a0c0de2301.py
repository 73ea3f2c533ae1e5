"""Forwarded Visma events ride the alert outbox.

`alert_deliveries.inbox_delivery_id` names the inbox delivery a `forward` row sends (cascading
with it); one row per delivery and target, so a repeated notification is forwarded once.

Revision ID: c2a0c0de2301
Revises: c5a0c0de2202
Create Date: 2026-12-08 00:00:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c2a0c0de2301"
down_revision: str | None = "c5a0c0de2202"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("alert_deliveries") as batch:
        batch.add_column(sa.Column("inbox_delivery_id", sa.String(length=36), nullable=True))
        batch.create_foreign_key(
            op.f("fk_alert_deliveries_inbox_delivery_id_deliveries"),
            "deliveries",
            ["inbox_delivery_id"],
            ["id"],
            ondelete="CASCADE",
        )
        batch.create_unique_constraint(
            op.f("uq_alert_deliveries_inbox_delivery_id"), ["inbox_delivery_id", "target"]
        )


def downgrade() -> None:
    with op.batch_alter_table("alert_deliveries") as batch:
        batch.drop_constraint(op.f("uq_alert_deliveries_inbox_delivery_id"), type_="unique")
        batch.drop_constraint(
            op.f("fk_alert_deliveries_inbox_delivery_id_deliveries"), type_="foreignkey"
        )
        batch.drop_column("inbox_delivery_id")
