"""The alert outbox: due alerts fan out into one delivery per target; due deliveries are claimed
with a lease; each attempt's answer is written back. Nothing here calls out: the sender worker
does that between these short transactions."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service import store
from service.domain import SendOutcome, retry_delay, send_outcome
from service.flows.alerts import PENDING
from service.flows.clock import utcnow
from service.flows.forwards import FORWARD, check_failing_target, with_sources

DISPATCHED = "dispatched"
WEBHOOK = "webhook"
SLACK = "slack"
MAX_ANSWER_CHARS = 500


@dataclass(frozen=True)
class OutboxSettings:
    """Where alerts go and how sends are retried (ALERT_* settings)."""

    webhook_urls: tuple[str, ...] = ()
    slack_urls: tuple[str, ...] = ()
    retry_base_seconds: float = 5.0
    retry_max_seconds: float = 36000.0
    max_attempts: int = 16
    # How long a claimed delivery stays ours; longer than one send may take.
    lease_seconds: float = 60.0
    batch_size: int = 20
    forward_failing_minutes: float = 30.0
    """ALERT_FORWARD_FAILING_MINUTES: a forward target failing this long raises an alert."""

    def targets(self) -> list[tuple[str, str]]:
        """Every (channel, url) an alert goes to."""
        return [(WEBHOOK, url) for url in self.webhook_urls] + [
            (SLACK, url) for url in self.slack_urls
        ]


@dataclass(frozen=True)
class SendResult:
    """How one attempt went: the target's status and answer, or the error that stopped it."""

    at: datetime
    status_code: int | None = None
    error: str | None = None
    answer: str | None = None
    retry_after: float | None = None


async def dispatch_due_alerts(
    sessions: async_sessionmaker[AsyncSession], settings: OutboxSettings
) -> int:
    """Fan every due alert out into deliveries for today's targets; returns how many alerts.

    Targets are read when the alert goes out, not when it is raised, so an alert raised by a
    process that does not send (the CLI) still reaches the targets of the serving replicas.
    """
    now = utcnow()
    async with sessions.begin() as session:
        alerts = await store.claim_due_alerts(session, now=now, limit=settings.batch_size)
        for alert in alerts:
            await store.add_deliveries(session, alert.id, settings.targets(), due=now)
            alert.state = DISPATCHED
            alert.dispatched_at = now
    return len(alerts)


async def claim_deliveries(
    sessions: async_sessionmaker[AsyncSession],
    settings: OutboxSettings,
    *,
    limit: int | None = None,
    room: Callable[[str], int] | None = None,
    full: Collection[str] = (),
) -> Sequence[store.ClaimedDelivery]:
    """Claim the deliveries due now, each leased to this worker for `lease_seconds`: at most
    `limit` (else `batch_size`), none for the targets in `full`, `room(target)` for the others."""
    now = utcnow()
    async with sessions.begin() as session:
        claimed = await store.claim_due_deliveries(
            session,
            now=now,
            lease_until=now + timedelta(seconds=settings.lease_seconds),
            limit=min(settings.batch_size, limit) if limit is not None else settings.batch_size,
            room=room,
            full=full,
        )
        return await with_sources(session, claimed)


async def record_send(
    sessions: async_sessionmaker[AsyncSession],
    delivery_id: int,
    result: SendResult,
    settings: OutboxSettings,
) -> SendOutcome | None:
    """Keep the attempt; mark the delivery sent, due again after a backoff, given up, or gone
    (the target answered 410 Gone: never tried again for this alert)."""
    async with sessions.begin() as session:
        delivery = await store.get_delivery(session, delivery_id, for_update=True)
        if delivery is None or delivery.state != PENDING:
            return None
        await store.add_attempt(
            session,
            delivery_id,
            at=result.at,
            status_code=result.status_code,
            error=result.error,
            answer=(result.answer or "")[:MAX_ANSWER_CHARS] or None,
        )
        delivery.attempts += 1
        if delivery.job_id is not None:  # a job's callback: the job's view shows its attempts
            store.mark_changed(session, delivery.job_id)
        outcome = send_outcome(
            result.status_code, attempts=delivery.attempts, max_attempts=settings.max_attempts
        )
        if outcome is SendOutcome.SENT:
            delivery.state = SendOutcome.SENT
            delivery.sent_at = result.at
            delivery.next_attempt_at = None
        elif outcome in (SendOutcome.FAILED, SendOutcome.GONE):
            delivery.state = outcome
            delivery.next_attempt_at = None
        else:
            wait = retry_delay(
                delivery.attempts,
                base_seconds=settings.retry_base_seconds,
                max_seconds=settings.retry_max_seconds,
                retry_after=result.retry_after,
            )
            delivery.next_attempt_at = utcnow() + timedelta(seconds=wait)
        if delivery.channel == FORWARD and outcome is not SendOutcome.SENT:
            await check_failing_target(
                session, delivery.target, now=result.at, minutes=settings.forward_failing_minutes
            )
        return outcome


async def next_due(sessions: async_sessionmaker[AsyncSession]) -> datetime | None:
    """When the next alert or delivery falls due, if any waits."""
    async with sessions.begin() as session:
        return await store.next_alert_due_at(session)
