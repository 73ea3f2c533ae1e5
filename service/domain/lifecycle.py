"""When a job's Visma state is read, and when a job that Visma never tells about expires.

Pure decisions on times: the flows load the job, ask here, and write the answer. Every open
job has a next check: a backstop at its deadline from the start, sooner once Visma accepted
it (the poll after `poll_after_seconds`, unless a webhook made the read due first), then at
growing intervals while Visma runs it. No check is ever put past the deadline, so a job
expires on time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from service.domain.jobs import JobState, Outcome

EXPIRED_FORGOTTEN = "Visma no longer knows the job ({status}) and the TTL has passed"
EXPIRED_NO_ANSWER = "no answer from Visma before the TTL passed: {message}"
EXPIRED_UNKNOWN_SUBMISSION = (
    "the submission's fate is unknown{why}: no 202 and no webhook that Visma's state confirms "
    "arrived before the TTL passed; it was not re-sent (use `visma-hooks submit --resend` to "
    "send it again deliberately)"
)


@dataclass(frozen=True)
class Pacing:
    """How often a job's state is read, and for how long (POLL_* and JOB_TTL_SECONDS)."""

    poll_after_seconds: float = 120.0
    """An accepted job with no webhook is read after this long."""
    job_ttl_seconds: float = 86400.0
    """After this (Visma keeps a job 24 hours) a job with no outcome expires."""
    recheck_seconds: float = 5.0
    """A job Visma still runs is read again after this, doubling with each read ..."""
    unnotified_first_read_seconds: float = 3.0
    """A job that asked Visma for no webhook (`notify: false`) is first read this soon after
    its 202, then at the growing intervals: nothing else will tell us it is done."""
    max_recheck_seconds: float = 1800.0
    """... up to this interval."""

    def deadline(self, submitted_at: datetime) -> datetime:
        """When the job expires if Visma has not told its outcome by then."""
        return submitted_at + timedelta(seconds=self.job_ttl_seconds)

    def recheck_after(self, attempts: int) -> timedelta:
        """The wait after a job's `attempts`-th read: doubling, capped."""
        seconds = self.recheck_seconds * (2 ** min(max(attempts - 1, 0), 16))
        return timedelta(seconds=min(seconds, self.max_recheck_seconds))


def first_check(pacing: Pacing, *, submitted_at: datetime) -> datetime:
    """A new job's backstop: whatever happens next (even this process dying before its 202 is
    recorded), the job is looked at again by its deadline, never left pending."""
    return pacing.deadline(submitted_at)


def poll_at(
    pacing: Pacing,
    *,
    accepted_at: datetime,
    next_check: datetime | None,
    notify: bool = True,
) -> datetime:
    """An accepted job's next check: the poll, in case no webhook comes (a job that asked for
    none is polled from the start, after a few seconds); a webhook that beat the 202 may have
    made the read due sooner already, which stands."""
    wait = pacing.poll_after_seconds if notify else pacing.unnotified_first_read_seconds
    poll = accepted_at + timedelta(seconds=wait)
    return poll if next_check is None else min(next_check, poll)


def next_check(
    pacing: Pacing,
    *,
    attempts: int,
    submitted_at: datetime,
    now: datetime,
    at_least_seconds: float | None = None,
) -> datetime:
    """The next read of a job still open after `attempts` reads: growing intervals (at least
    `at_least_seconds`, when Visma said how long to wait), never past the deadline."""
    wait = pacing.recheck_after(attempts)
    if at_least_seconds is not None:
        wait = max(wait, timedelta(seconds=at_least_seconds))
    deadline = pacing.deadline(submitted_at)
    if now < deadline:
        return min(now + wait, deadline)
    return now + wait


def next_check_after_read(
    pacing: Pacing,
    *,
    attempts: int,
    submitted_at: datetime,
    now: datetime,
    read_claimed_at: datetime,
    last_webhook_at: datetime | None,
) -> datetime:
    """The next read after one that found the job still running: now, if its webhook came
    while we were reading (Visma is done), else the next of the growing intervals."""
    if last_webhook_at is not None and last_webhook_at >= read_claimed_at:
        return now
    return next_check(pacing, attempts=attempts, submitted_at=submitted_at, now=now)


def decide_expiry(
    pacing: Pacing,
    *,
    submitted_at: datetime,
    now: datetime,
    not_found: bool,
    http_status: int | None,
    message: str,
) -> Outcome | None:
    """After a failed state read: `expired` once the deadline has passed (Visma forgot the job,
    or never answered), else None to try again (a young job's 404 may only mean Visma has not
    registered it yet)."""
    if now < pacing.deadline(submitted_at):
        return None
    if not_found:
        reason = EXPIRED_FORGOTTEN.format(status=http_status)
    else:
        reason = EXPIRED_NO_ANSWER.format(message=message)
    return Outcome(state=JobState.EXPIRED, http_status=None, note=reason)


def decide_unknown_submission(
    pacing: Pacing, *, submitted_at: datetime, now: datetime, why: str | None
) -> Outcome | None:
    """A job with no Visma job id (its 202 never came) expires at its deadline, saying why its
    fate was unknown; until then it waits for a webhook."""
    if now < pacing.deadline(submitted_at):
        return None
    reason = EXPIRED_UNKNOWN_SUBMISSION.format(why=f" ({why})" if why else "")
    return Outcome(state=JobState.EXPIRED, http_status=None, note=reason)
