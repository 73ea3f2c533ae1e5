"""A job's `webhook` timeline entries come from the inbox, not from copies in `job_events`.

The ingest writer used to add a `job_events` row for every delivery that matched a job; the
delivery's own row (`deliveries.job_id`) holds the same facts, and the timeline now reads them
from there (`store.job_events`). Upgrading removes the copies whose delivery is still stored
(the copy names it in `detail.deliveryId`), so no entry shows twice;
downgrading writes them back from the inbox.

Revision ID: e1b6f4d5a706
Revises: d9a5e3c4f605
Create Date: 2026-11-30 04:20:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "e1b6f4d5a706"
down_revision: str | None = "d9a5e3c4f605"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        delivery_id = "job_events.detail ->> 'deliveryId'"
    else:
        delivery_id = "json_extract(job_events.detail, '$.deliveryId')"
    op.execute(
        f"""
        DELETE FROM job_events
        WHERE kind = 'webhook' AND source = 'webhook'
          AND EXISTS (SELECT 1 FROM deliveries AS d
                      WHERE d.id = {delivery_id} AND d.job_id = job_events.job_id)
        """
    )


def downgrade() -> None:
    # The detail the writer used to store: deliveryId, notificationId, vismaJobId, problem.
    if op.get_bind().dialect.name == "postgresql":
        detail = (
            "json_strip_nulls(json_build_object('deliveryId', d.id,"
            " 'problem', d.problem))::jsonb"
            " || jsonb_build_object('notificationId', d.notification_id,"
            " 'vismaJobId', d.visma_job_id)"
        )
        detail = f"({detail})::json"
    else:
        detail = (
            "json_patch(json_object('deliveryId', d.id, 'notificationId', d.notification_id,"
            " 'vismaJobId', d.visma_job_id),"
            " CASE WHEN d.problem IS NULL THEN '{}'"
            " ELSE json_object('problem', d.problem) END)"
        )
    op.execute(
        f"""
        INSERT INTO job_events (job_id, at, kind, source, detail)
        SELECT d.job_id, d.received_at, 'webhook', 'webhook', {detail}
        FROM deliveries AS d
        WHERE d.job_id IS NOT NULL
        ORDER BY d.received_at, d.id
        """
    )
