"""Status-page state and history, alerts, their delivery outbox and noise windows.

Revision ID: c8f4d2b3e504
Revises: b7e3c1a2d403
Create Date: 2026-11-25 10:57:42.569360+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c8f4d2b3e504"
down_revision: str | None = "b7e3c1a2d403"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "raised_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.now(),
            nullable=False,
        ),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("dispatched_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
    )
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_alerts_kind"), ["kind"], unique=False)
        batch_op.create_index(batch_op.f("ix_alerts_raised_at"), ["raised_at"], unique=False)
        batch_op.create_index("ix_alerts_state_due_at", ["state", "due_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_alerts_subject"), ["subject"], unique=False)

    op.create_table(
        "status_components",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("group_id", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "first_seen_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.now(),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_status_components")),
    )
    with op.batch_alter_table("status_components", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_status_components_status"), ["status"], unique=False)

    op.create_table(
        "status_incidents",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=True),
        sa.Column("impact", sa.String(length=32), nullable=True),
        sa.Column("shortlink", sa.Text(), nullable=True),
        sa.Column("maintenance", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("scheduled_for", sa.DateTime(timezone=True), nullable=True),
        sa.Column("scheduled_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("components", sa.JSON(), nullable=False),
        sa.Column(
            "first_seen_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.now(),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_status_incidents")),
    )
    with op.batch_alter_table("status_incidents", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_status_incidents_status"), ["status"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_status_incidents_updated_at"), ["updated_at"], unique=False
        )

    op.create_table(
        "alert_deliveries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("alert_id", sa.String(length=36), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["alert_id"],
            ["alerts.id"],
            name=op.f("fk_alert_deliveries_alert_id_alerts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_deliveries")),
    )
    with op.batch_alter_table("alert_deliveries", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_alert_deliveries_alert_id"), ["alert_id"], unique=False
        )
        batch_op.create_index(
            "ix_alert_deliveries_state_next_attempt_at", ["state", "next_attempt_at"], unique=False
        )

    op.create_table(
        "alert_windows",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("told", sa.String(length=32), nullable=True),
        sa.Column("count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("subjects", sa.JSON(), nullable=False),
        sa.Column("held_alert_id", sa.String(length=36), nullable=True),
        sa.ForeignKeyConstraint(
            ["held_alert_id"],
            ["alerts.id"],
            name=op.f("fk_alert_windows_held_alert_id_alerts"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_alert_windows")),
    )
    op.create_table(
        "status_component_updates",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("component_id", sa.String(length=64), nullable=False),
        sa.Column("old_status", sa.String(length=32), nullable=True),
        sa.Column("new_status", sa.String(length=32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("applied", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["component_id"],
            ["status_components.id"],
            name=op.f("fk_status_component_updates_component_id_status_components"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_status_component_updates")),
    )
    with op.batch_alter_table("status_component_updates", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_status_component_updates_component_id"), ["component_id"], unique=False
        )

    op.create_table(
        "status_incident_components",
        sa.Column("incident_id", sa.String(length=64), nullable=False),
        sa.Column("component_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["status_incidents.id"],
            name=op.f("fk_status_incident_components_incident_id_status_incidents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "incident_id", "component_id", name=op.f("pk_status_incident_components")
        ),
    )
    with op.batch_alter_table("status_incident_components", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_status_incident_components_component_id"), ["component_id"], unique=False
        )

    op.create_table(
        "status_incident_updates",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("incident_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["status_incidents.id"],
            name=op.f("fk_status_incident_updates_incident_id_status_incidents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_status_incident_updates")),
    )
    with op.batch_alter_table("status_incident_updates", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_status_incident_updates_incident_id"), ["incident_id"], unique=False
        )

    op.create_table(
        "alert_attempts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("delivery_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("answer", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["alert_deliveries.id"],
            name=op.f("fk_alert_attempts_delivery_id_alert_deliveries"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_attempts")),
    )
    with op.batch_alter_table("alert_attempts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_alert_attempts_delivery_id"), ["delivery_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("alert_attempts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alert_attempts_delivery_id"))

    op.drop_table("alert_attempts")
    with op.batch_alter_table("status_incident_updates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_status_incident_updates_incident_id"))

    op.drop_table("status_incident_updates")
    with op.batch_alter_table("status_incident_components", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_status_incident_components_component_id"))

    op.drop_table("status_incident_components")
    with op.batch_alter_table("status_component_updates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_status_component_updates_component_id"))

    op.drop_table("status_component_updates")
    op.drop_table("alert_windows")
    with op.batch_alter_table("alert_deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_alert_deliveries_state_next_attempt_at")
        batch_op.drop_index(batch_op.f("ix_alert_deliveries_alert_id"))

    op.drop_table("alert_deliveries")
    with op.batch_alter_table("status_incidents", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_status_incidents_updated_at"))
        batch_op.drop_index(batch_op.f("ix_status_incidents_status"))

    op.drop_table("status_incidents")
    with op.batch_alter_table("status_components", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_status_components_status"))

    op.drop_table("status_components")
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alerts_subject"))
        batch_op.drop_index("ix_alerts_state_due_at")
        batch_op.drop_index(batch_op.f("ix_alerts_raised_at"))
        batch_op.drop_index(batch_op.f("ix_alerts_kind"))

    op.drop_table("alerts")
