"""A job list filtered by tag counts its rows without reading and parsing every job's JSON.

`GET /api/v1/jobs?state=failed&tag.team=t7` answers an exact `totalCount`, so it visits every
job in the state. PostgreSQL: `jobs.tags` becomes `jsonb`, stored parsed, so `tags ->> 'team'`
no longer parses the text of each row. An index would not pay there: a GIN index was slower
for this filter, and a btree holding the tags limits their size (16 tags of 264 characters
exceed its 2.7 kB entries). SQLite: an index on (state, tags) answers the count from the index
alone. docs/benchmarks.md has the figures.

Revision ID: a4e0c8d9b011
Revises: f2c8a6b7e807
Create Date: 2026-11-30 07:10:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "a4e0c8d9b011"
down_revision: str | None = "f2c8a6b7e807"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute("ALTER TABLE jobs ALTER COLUMN tags TYPE jsonb USING tags::jsonb")
    else:
        op.create_index("ix_jobs_state_tags", "jobs", ["state", "tags"])


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute("ALTER TABLE jobs ALTER COLUMN tags TYPE json USING tags::json")
    else:
        op.drop_index("ix_jobs_state_tags", table_name="jobs")
