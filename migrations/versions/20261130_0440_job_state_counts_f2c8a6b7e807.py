"""Job counts per state, kept by triggers, so a job list filtered by state alone (or not at
all) answers its exact `totalCount` without counting a million index entries.

`job_state_counts` holds signed changes; the count of a state is the sum of its rows. Triggers
on `jobs` add them: on insert (PostgreSQL: one row per state and statement, from the
statement's transition table, so a bulk insert stays a bulk insert), on a change of `state`
(only then: the webhook hot path's updates of other columns fire nothing), and on delete.

Revision ID: f2c8a6b7e807
Revises: e1b6f4d5a706
Create Date: 2026-11-30 04:40:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "f2c8a6b7e807"
down_revision: str | None = "e1b6f4d5a706"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_POSTGRES_TRIGGERS = [
    """
    CREATE FUNCTION job_state_counts_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO job_state_counts (state, delta)
        SELECT state, count(*) FROM inserted_jobs GROUP BY state;
        RETURN NULL;
    END $$
    """,
    """
    CREATE FUNCTION job_state_counts_changed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP IN ('UPDATE', 'DELETE') THEN
            INSERT INTO job_state_counts (state, delta) VALUES (OLD.state, -1);
        END IF;
        IF TG_OP = 'UPDATE' THEN
            INSERT INTO job_state_counts (state, delta) VALUES (NEW.state, 1);
        END IF;
        RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER jobs_count_inserted AFTER INSERT ON jobs
    REFERENCING NEW TABLE AS inserted_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION job_state_counts_inserted()
    """,
    """
    CREATE TRIGGER jobs_count_state_changed AFTER UPDATE OF state ON jobs
    FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state)
    EXECUTE FUNCTION job_state_counts_changed()
    """,
    """
    CREATE TRIGGER jobs_count_deleted AFTER DELETE ON jobs
    FOR EACH ROW EXECUTE FUNCTION job_state_counts_changed()
    """,
]

_SQLITE_TRIGGERS = [
    """
    CREATE TRIGGER jobs_count_inserted AFTER INSERT ON jobs BEGIN
        INSERT INTO job_state_counts (state, delta) VALUES (NEW.state, 1);
    END
    """,
    """
    CREATE TRIGGER jobs_count_state_changed AFTER UPDATE OF state ON jobs
    WHEN OLD.state IS NOT NEW.state BEGIN
        INSERT INTO job_state_counts (state, delta) VALUES (OLD.state, -1), (NEW.state, 1);
    END
    """,
    """
    CREATE TRIGGER jobs_count_deleted AFTER DELETE ON jobs BEGIN
        INSERT INTO job_state_counts (state, delta) VALUES (OLD.state, -1);
    END
    """,
]


def upgrade() -> None:
    op.create_table(
        "job_state_counts",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("delta", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_state_counts")),
    )
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:  # no job may change between the count below and the triggers (SQLite: the
        # migration holds the write lock already)
        op.execute("LOCK TABLE jobs IN SHARE ROW EXCLUSIVE MODE")
    op.execute(
        "INSERT INTO job_state_counts (state, delta) SELECT state, count(*) FROM jobs GROUP BY state"
    )
    for statement in _POSTGRES_TRIGGERS if postgres else _SQLITE_TRIGGERS:
        op.execute(statement)


def downgrade() -> None:
    for trigger in ("jobs_count_inserted", "jobs_count_state_changed", "jobs_count_deleted"):
        if op.get_bind().dialect.name == "postgresql":
            op.execute(f"DROP TRIGGER {trigger} ON jobs")
        else:
            op.execute(f"DROP TRIGGER {trigger}")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION job_state_counts_inserted()")
        op.execute("DROP FUNCTION job_state_counts_changed()")
    op.drop_table("job_state_counts")
