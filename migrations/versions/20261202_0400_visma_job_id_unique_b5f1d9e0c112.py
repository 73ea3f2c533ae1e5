"""A Visma job id belongs to one job: `jobs.visma_job_id` becomes unique.

Before, a webhook's unsigned `vh-job-id` header could hand one job's Visma job id to another
job. If that happened, the id stays with the job that was accepted first (the one whose 202
named it, as a rule); the others lose it, each with a timeline entry that says so, and are
left to their TTL like any job whose Visma id is unknown.

Revision ID: b5f1d9e0c112
Revises: a4e0c8d9b011
Create Date: 2026-12-02 04:00:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "b5f1d9e0c112"
down_revision: str | None = "a4e0c8d9b011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SHARED = sa.text(
    """
    SELECT id, visma_job_id FROM (
        SELECT id, visma_job_id, row_number() OVER (
            PARTITION BY visma_job_id
            ORDER BY accepted_at IS NULL, accepted_at, submitted_at, id
        ) AS place
        FROM jobs WHERE visma_job_id IS NOT NULL
    ) AS ranked
    WHERE place > 1
    """
)
NOTE = (
    "another job holds this Visma job id (a webhook's unsigned header had given it to both); "
    "it stays with the job accepted first, and this job no longer claims it"
)


def upgrade() -> None:
    bind = op.get_bind()
    jobs = sa.table("jobs", sa.column("id"), sa.column("visma_job_id"))
    events = sa.table(
        "job_events",
        sa.column("job_id"),
        sa.column("at", sa.DateTime(timezone=True)),
        sa.column("kind"),
        sa.column("source"),
        sa.column("detail", sa.JSON()),
    )
    now = datetime.now(UTC)
    if bind.dialect.name == "sqlite":
        now = now.replace(tzinfo=None)  # as the service stores UTC times in SQLite
    for job_id, visma_job_id in bind.execute(_SHARED).all():
        bind.execute(sa.update(jobs).where(jobs.c.id == job_id).values(visma_job_id=None))
        bind.execute(
            sa.insert(events).values(
                job_id=job_id,
                at=now,
                kind="visma_id_cleared",
                source="migration",
                detail={"vismaJobId": visma_job_id, "note": NOTE},
            )
        )
    op.drop_index("ix_jobs_visma_job_id", table_name="jobs")
    op.create_index("ix_jobs_visma_job_id", "jobs", ["visma_job_id"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_jobs_visma_job_id", table_name="jobs")
    op.create_index("ix_jobs_visma_job_id", "jobs", ["visma_job_id"], unique=False)
