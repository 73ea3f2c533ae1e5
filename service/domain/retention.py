"""How long the service keeps what it stored, and the cut-off times that follow from it.

Never removed, whatever the settings: jobs still open, and the deliveries of jobs still open
(their outcome is not known yet). A finished job goes with its timeline; a delivery goes on its
own clock, and its notification id is still refused as a duplicate for `dedupe_days` after it
arrived, whether or not its row is gone (the dispatcher may send it again meanwhile).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

KEEP_FOREVER = 0.0
"""A retention of 0 days keeps those rows forever."""


@dataclass(frozen=True)
class Retention:
    """Days each kind of row is kept (fractions allowed; 0: forever)."""

    deliveries_days: float = 30.0
    jobs_days: float = 90.0
    """Finished jobs, with their timeline and what hangs off them."""
    status_days: float = 90.0
    """Status-page history: component updates, and incidents once closed."""
    alerts_days: float = 90.0
    """Alerts that have gone out (or were given up), with their delivery attempts."""
    dedupe_days: float = 7.0
    """How long a notification id is refused as a duplicate, even once its delivery is gone."""
    idempotency_days: float = 7.0
    """How long an Idempotency-Key answers the job it made (the job keeps showing its key)."""

    def cutoffs(self, now: datetime) -> Cutoffs:
        """What is old enough to go, as of `now`."""
        return Cutoffs(
            deliveries=_before(now, self.deliveries_days),
            jobs=_before(now, self.jobs_days),
            status=_before(now, self.status_days),
            alerts=_before(now, self.alerts_days),
            # The window is kept even when deliveries are kept forever (then it holds nothing).
            dedupe=now - timedelta(days=self.dedupe_days),
            idempotency=now - timedelta(days=self.idempotency_days),
            sessions=now,
        )


@dataclass(frozen=True)
class Cutoffs:
    """Rows older than these go (None: that kind is kept forever)."""

    deliveries: datetime | None
    jobs: datetime | None
    status: datetime | None
    alerts: datetime | None
    dedupe: datetime
    """Notification ids of deliveries received since then are still refused as duplicates."""
    idempotency: datetime
    """Idempotency keys made before then are forgotten (their jobs stay)."""
    sessions: datetime
    """Dashboard sessions that expired before then go: an expired session opens nothing."""


def _before(now: datetime, days: float) -> datetime | None:
    return None if days == KEEP_FOREVER else now - timedelta(days=days)
