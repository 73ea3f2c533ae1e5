"""What the service keeps for itself: each company's rate budget as last heard, failed
tokens per address, dashboard sessions."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Float, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from service.store.models.base import Base


class CompanyBudgetRecord(Base):
    """A company's Visma rate budget as a replica last heard it, so that a process that starts
    (a restart, the CLI) does not start from "nothing known", which always sends. Times are
    wall-clock instants; `sharers` is how many spend the budget at a replica's pace."""

    __tablename__ = "company_budgets"

    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    limit: Mapped[int | None] = mapped_column(Integer)
    remaining: Mapped[int | None] = mapped_column(Integer)
    reset_at: Mapped[datetime | None]
    paused_until: Mapped[datetime | None]
    sharers: Mapped[float] = mapped_column(Float)
    recorded_at: Mapped[datetime]


class AuthFailureWindow(Base):
    """Failed authentications from one client address in its current minute, shared by every
    worker and replica (`address` "*" counts all of them). `started` is the window's first
    failure, in seconds since the epoch; a row older than a minute counts nothing."""

    __tablename__ = "auth_failures"

    address: Mapped[str] = mapped_column(String(64), primary_key=True)
    started: Mapped[float] = mapped_column(Float)
    failures: Mapped[int] = mapped_column(Integer)


class DashboardSession(Base):
    """One dashboard login, until it is logged out (the row is deleted) or expires (retention
    removes it). The row alone opens nothing: it holds no session id and no token."""

    __tablename__ = "dashboard_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    """SHA-256 (hex) of the session id the cookie carries."""
    token_fingerprint: Mapped[str] = mapped_column(String(64))
    """An HMAC of the session id keyed with the API token it was made with: each request checks
    it against the configured tokens, so a token taken out of the settings ends its sessions."""
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)
