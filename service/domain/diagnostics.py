"""Diagnostics no other tool gives: webhooks that stopped coming, and a secret that stopped
matching. Pure rules on plain values; `flows/diagnostics.py` feeds them and raises the alerts.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

POLL = "poll"
WEBHOOK = "webhook"
SILENT_CHECKS = (
    "the subscription's URL in the Visma Developer Portal (it must reach /webhooks/visma)",
    "the subscription's secret (it must be one of VISMA_WEBHOOK_SECRETS)",
    "whether the company approved the application's webhook scopes in Visma App Store "
    "(without that its jobs get no webhooks at all)",
)
BAD_SIGNATURE_CHECKS = (
    "VISMA_WEBHOOK_SECRETS against the subscription's secret in the Visma Developer Portal: "
    "a rotated or mistyped secret fails every delivery (list old and new while rotating)",
)
MAX_KEPT_FAILURES = 1000
"""The failure times kept between checks: more than any threshold worth setting."""


def webhooks_went_silent(resolvers_newest_first: Sequence[str | None], *, after_jobs: int) -> bool:
    """Whether a company's newest `after_jobs` finished jobs were all resolved by polling, and
    the one before them was not (so one streak raises one alert, not one per further job)."""
    if after_jobs < 1 or len(resolvers_newest_first) < after_jobs:
        return False
    streak = resolvers_newest_first[:after_jobs]
    if any(resolver != POLL for resolver in streak):
        return False
    before = resolvers_newest_first[after_jobs : after_jobs + 1]
    return not before or before[0] != POLL


def silent_summary(company: str, *, jobs: int) -> str:
    who = f"company {company}" if company else "the default company"
    return (
        f"Visma webhooks seem silent for {who}: its last {jobs} jobs were all resolved by "
        "polling. Check " + "; ".join(SILENT_CHECKS) + "."
    )


def recent_failures(
    kept: Sequence[datetime], added: Sequence[datetime], *, now: datetime, window_seconds: float
) -> list[datetime]:
    """The failure times still inside the window, oldest first (at most MAX_KEPT_FAILURES)."""
    start = now - timedelta(seconds=window_seconds)
    times = sorted(t for t in (*kept, *added) if t > start)
    return times[-MAX_KEPT_FAILURES:]


def bad_signatures_alarm(
    times: Sequence[datetime],
    *,
    now: datetime,
    threshold: int,
    quiet_until: datetime | None,
) -> bool:
    """Whether `times` (failed signature checks inside the window) make an alert now: as many
    as the threshold, and no such alert within the last window (`quiet_until`)."""
    if threshold < 1 or len(times) < threshold:
        return False
    return quiet_until is None or now >= quiet_until


def bad_signatures_summary(count: int, *, window_seconds: float) -> str:
    minutes = window_seconds / 60
    span = f"{minutes:g} minutes" if minutes >= 1 else f"{window_seconds:g} seconds"
    return (
        f"{count} Visma webhook deliveries failed the signature check within {span}. Check "
        + BAD_SIGNATURE_CHECKS[0]
        + "."
    )
