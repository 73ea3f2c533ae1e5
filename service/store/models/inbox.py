"""The webhook inbox, and the notification ids of deliveries retention removed."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, LargeBinary, String, Text, null
from sqlalchemy.orm import Mapped, mapped_column

from service.store.models.base import Base


class Delivery(Base):
    """A webhook delivery exactly as it arrived (the inbox); unique on its notification id."""

    __tablename__ = "deliveries"
    __mapper_args__ = {"eager_defaults": False}  # as for jobs

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    notification_id: Mapped[str | None] = mapped_column(String(128), unique=True)
    event_id: Mapped[str | None] = mapped_column(String(128))
    received_at: Mapped[datetime] = mapped_column(index=True)
    headers: Mapped[dict[str, Any]] = mapped_column(JSON)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    verified: Mapped[bool] = mapped_column(Boolean)
    job_id: Mapped[str | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="SET NULL"), index=True
    )
    claimed_job_id: Mapped[str | None] = mapped_column(String(128))
    visma_job_id: Mapped[str | None] = mapped_column(String(64))
    problem: Mapped[str | None] = mapped_column(Text)
    # The company the delivery says it is for (x-vwd-tenant-id, not signed).
    tenant_id: Mapped[str | None] = mapped_column(Text, server_default=null())


class PurgedNotification(Base):
    """The notification id of a delivery that retention removed while the dispatcher might
    still send it again: the inbox keeps refusing it as a duplicate until `received_at` is
    older than the dedupe window."""

    __tablename__ = "purged_notifications"

    notification_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(index=True)
