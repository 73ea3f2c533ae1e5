"""Alerts, their outbox (deliveries, also of callbacks and forwards), attempts and windows."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, UniqueConstraint, func
from sqlalchemy.orm import Mapped, mapped_column

from service.store.models.base import Base


class Alert(Base):
    """An alert raised by a transition; `body` is what JSON hooks receive.

    `pending` alerts go out once `due_at` passes (a held alert waits for its noise window to
    close); the sender then fans each out into one `AlertDelivery` per target.
    """

    __tablename__ = "alerts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    subject: Mapped[str] = mapped_column(String(200), index=True)
    summary: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime]
    raised_at: Mapped[datetime] = mapped_column(server_default=func.now(), index=True)
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16))
    due_at: Mapped[datetime | None]
    dispatched_at: Mapped[datetime | None]

    __table_args__ = (Index("ix_alerts_state_due_at", "state", "due_at"),)


class AlertDelivery(Base):
    """The outbox: one alert for one target, retried with backoff until sent or given up.

    A job's callback is a delivery of the same outbox with no alert: it names its job (and
    goes with it) and carries the body it sends, the job's JSON when it ended. A forwarded
    Visma event is one too: it names its inbox delivery (and goes with it), whose body it
    sends verbatim; one per delivery and target."""

    __tablename__ = "alert_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    alert_id: Mapped[str | None] = mapped_column(
        ForeignKey("alerts.id", ondelete="CASCADE"), index=True
    )
    job_id: Mapped[str | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), index=True
    )
    inbox_delivery_id: Mapped[str | None] = mapped_column(
        ForeignKey("deliveries.id", ondelete="CASCADE")
    )
    """For a forwarded event (channel `forward`): the inbox delivery it forwards."""
    body: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    channel: Mapped[str] = mapped_column(String(16))
    target: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Due work, kept in the row so a retry survives a restart; a claim pushes it forward as
    # its lease.
    next_attempt_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]

    __table_args__ = (
        Index("ix_alert_deliveries_state_next_attempt_at", "state", "next_attempt_at"),
        UniqueConstraint("inbox_delivery_id", "target"),
    )


class AlertAttempt(Base):
    """One try at sending an alert delivery, and how the target answered."""

    __tablename__ = "alert_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    delivery_id: Mapped[int] = mapped_column(
        ForeignKey("alert_deliveries.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime]
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    answer: Mapped[str | None] = mapped_column(Text)


class AlertWindow(Base):
    """A noise window (a component's flaps, or a fault code's burst of failed jobs)."""

    __tablename__ = "alert_windows"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    until: Mapped[datetime | None]
    told: Mapped[str | None] = mapped_column(String(32))
    count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    subjects: Mapped[list[Any]] = mapped_column(JSON, default=list)
    held_alert_id: Mapped[str | None] = mapped_column(ForeignKey("alerts.id", ondelete="SET NULL"))
