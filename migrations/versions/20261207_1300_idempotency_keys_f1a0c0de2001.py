"""Idempotency keys: a repeated POST /api/v1/jobs with the same Idempotency-Key answers the job
the first one made, instead of sending the request to Visma again.

`idempotency_keys` holds each company's keys (the primary key makes one job per key, on both
databases and across replicas) with the fingerprint of the request and the job it made;
retention removes a key after IDEMPOTENCY_KEY_DAYS, and the key goes with its job. The job
itself keeps the key it was made with (`jobs.idempotency_key`), for its JSON.

Revision ID: f1a0c0de2001
Revises: e9f2b1c3d413
Create Date: 2026-12-07 13:00:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "f1a0c0de2001"
down_revision: str | None = "e9f2b1c3d413"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "idempotency_keys",
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["jobs.id"],
            name=op.f("fk_idempotency_keys_job_id_jobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant", "key", name=op.f("pk_idempotency_keys")),
    )
    op.create_index(
        op.f("ix_idempotency_keys_job_id"), "idempotency_keys", ["job_id"], unique=False
    )
    op.create_index(
        op.f("ix_idempotency_keys_created_at"), "idempotency_keys", ["created_at"], unique=False
    )
    # Plain ADD COLUMN, which SQLite does in place: a batch copy of `jobs` would drop its
    # job-count triggers.
    op.add_column(
        "jobs", sa.Column("idempotency_key", sa.String(length=255), server_default=sa.null())
    )


def downgrade() -> None:
    op.drop_column("jobs", "idempotency_key")
    op.drop_index(op.f("ix_idempotency_keys_created_at"), table_name="idempotency_keys")
    op.drop_index(op.f("ix_idempotency_keys_job_id"), table_name="idempotency_keys")
    op.drop_table("idempotency_keys")
