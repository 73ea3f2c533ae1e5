"""The diagnostics' shell: it gathers what the rules of `domain/diagnostics.py` look at, and
raises their alerts through the outbox like every other alert.

- `webhooks.silent`: checked whenever a job is resolved by polling (`check_silence`, in the
  transaction that records the outcome): the company's newest jobs that asked for a webhook.
- `webhooks.bad_signatures`: the webhook endpoint tells `SignatureWatch` of each failed
  signature check (no I/O on that path). The watch adds them up to once a second into one
  shared row (`alert_windows`), so every worker and replica counts toward the same threshold,
  and a flood of forged deliveries costs one small transaction a second, not one each.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service import store
from service.domain import (
    BAD_SIGNATURE_CHECKS,
    SILENT_CHECKS,
    AlertKind,
    AlertPolicy,
    bad_signatures_alarm,
    bad_signatures_summary,
    iso,
    recent_failures,
    silent_summary,
    webhooks_went_silent,
)
from service.flows.alerts import raise_diagnostic_alert
from service.flows.clock import utcnow
from service.logs import FailureLog

log = logging.getLogger(__name__)

BAD_SIGNATURES_KEY = "webhooks.bad_signatures"
FLUSH_SECONDS = 1.0


async def check_silence(
    session: AsyncSession, *, company: str | None, at: datetime, policy: AlertPolicy
) -> None:
    """After a job of `company` was resolved by polling: raise `webhooks.silent` if the
    company's newest jobs all were (once per such streak). A job stored before jobs named their
    company (None) is the default company's."""
    company = company or policy.default_tenant
    resolvers = await store.recent_resolvers(
        session,
        tenant=company,
        default_tenant=policy.default_tenant,
        limit=policy.silent_after_jobs + 1,
    )
    company = company or ""
    if not webhooks_went_silent(resolvers, after_jobs=policy.silent_after_jobs):
        return
    await raise_diagnostic_alert(
        session,
        kind=AlertKind.WEBHOOKS_SILENT,
        subject=f"company:{company}",
        summary=silent_summary(company, jobs=policy.silent_after_jobs),
        at=at,
        subject_json={
            "company": company,
            "jobs": {"count": policy.silent_after_jobs, "resolvedBy": "poll"},
            "check": list(SILENT_CHECKS),
        },
    )


@dataclass(frozen=True)
class SignatureFailures:
    """Failed signature checks inside the window, across every process (as last recorded)."""

    count: int
    window_seconds: float
    threshold: int
    alerting: bool

    def as_json(self) -> dict[str, object]:
        return {
            "count": self.count,
            "windowSeconds": self.window_seconds,
            "threshold": self.threshold,
            "alerting": self.alerting,
        }


async def signature_failures(
    session: AsyncSession, *, now: datetime, policy: AlertPolicy
) -> SignatureFailures:
    """What the shared count says now (for the health panel)."""
    row = await store.get_window(session, BAD_SIGNATURES_KEY)
    kept = _times(row.subjects if row else [])
    times = recent_failures(kept, [], now=now, window_seconds=policy.bad_signatures_window_seconds)
    return SignatureFailures(
        count=len(times),
        window_seconds=policy.bad_signatures_window_seconds,
        threshold=policy.bad_signatures,
        alerting=bool(row and row.until and now < row.until),
    )


async def record_bad_signatures(
    sessions: async_sessionmaker[AsyncSession],
    failed_at: list[datetime],
    *,
    policy: AlertPolicy,
) -> bool:
    """Add failed checks to the shared count; raise the alert when they reach the threshold.
    Whether it raised one."""
    now = utcnow()
    window = policy.bad_signatures_window_seconds
    async with sessions.begin() as session:
        row = await store.lock_window(session, BAD_SIGNATURES_KEY)
        times = recent_failures(_times(row.subjects), failed_at, now=now, window_seconds=window)
        row.subjects = [iso(t) for t in times]
        row.count = len(times)
        if not bad_signatures_alarm(
            times, now=now, threshold=policy.bad_signatures, quiet_until=row.until
        ):
            return False
        row.until = now + timedelta(seconds=window)  # one alert per window, not per failure
        await raise_diagnostic_alert(
            session,
            kind=AlertKind.WEBHOOKS_BAD_SIGNATURES,
            subject="webhooks:signature",
            summary=bad_signatures_summary(len(times), window_seconds=window),
            at=now,
            subject_json={
                "signatureFailures": {"count": len(times), "windowSeconds": window},
                "check": list(BAD_SIGNATURE_CHECKS),
            },
        )
        return True


class SignatureWatch:
    """Counts failed signature checks in memory and records them once a second."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], policy: AlertPolicy) -> None:
        self._sessions = sessions
        self._policy = policy
        self._pending: list[datetime] = []
        self._flush: asyncio.Task[None] | None = None
        self._failures = FailureLog(log, "recording failed signature checks")

    def failed(self) -> None:
        """One delivery failed the signature check (called on the request path: no I/O)."""
        if len(self._pending) < 10 * max(self._policy.bad_signatures, 1):
            self._pending.append(utcnow())
        if self._flush is None:
            self._flush = asyncio.get_running_loop().create_task(self._flush_soon())

    async def _flush_soon(self) -> None:
        try:
            await asyncio.sleep(FLUSH_SECONDS)
        finally:
            self._flush = None
            await self.flush()

    async def flush(self) -> None:
        pending, self._pending = self._pending, []
        if not pending:
            return
        try:
            await record_bad_signatures(self._sessions, pending, policy=self._policy)
        except Exception as exc:  # the count is advice: never let it fail a request
            self._failures.failed(exc)
        else:
            self._failures.succeeded()

    async def close(self) -> None:
        task = self._flush
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.flush()


def _times(values: object) -> list[datetime]:
    times: list[datetime] = []
    for value in values if isinstance(values, list) else []:
        with contextlib.suppress(TypeError, ValueError):
            times.append(datetime.fromisoformat(str(value).replace("Z", "+00:00")))
    return times
