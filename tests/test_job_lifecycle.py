"""When a job's state is read, and when it expires: the core's decisions, as tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from service.domain import (
    JobState,
    Pacing,
    decide_expiry,
    decide_unknown_submission,
    first_check,
    next_check,
    next_check_after_read,
    poll_at,
)

T0 = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)
PACING = Pacing(poll_after_seconds=120, job_ttl_seconds=3600, recheck_seconds=5)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_polls_of_a_running_job_grow_apart_up_to_the_cap() -> None:
    pacing = Pacing(recheck_seconds=5, max_recheck_seconds=1800)
    waits = [pacing.recheck_after(n).total_seconds() for n in range(1, 12)]
    assert waits[:5] == [5, 10, 20, 40, 80]
    assert all(a <= b for a, b in zip(waits, waits[1:], strict=False))
    assert waits[-1] == 1800


def test_a_new_job_is_checked_by_its_deadline_whatever_happens() -> None:
    assert first_check(PACING, submitted_at=T0) == at(3600)


@pytest.mark.parametrize(
    ("next_before", "expected"),
    [
        (None, at(10 + 120)),  # the poll, in case no webhook comes
        (at(3600), at(10 + 120)),  # the backstop gives way to the poll
        (at(11), at(11)),  # a webhook that beat the 202 made the read due sooner: it stands
    ],
)
def test_poll_at_an_accepted_job(next_before: datetime | None, expected: datetime) -> None:
    assert poll_at(PACING, accepted_at=at(10), next_check=next_before) == expected


@pytest.mark.parametrize(
    ("attempts", "now", "at_least", "expected"),
    [
        (1, 100, None, at(105)),
        (3, 100, None, at(120)),
        (3, 100, 60, at(160)),  # Visma said how long to wait
        (1, 3598, None, at(3600)),  # never past the deadline, so expiry is on time
        (1, 3700, None, at(3705)),  # past it (a read failed late): keep going
    ],
)
def test_next_check_of_a_job_still_open(
    attempts: int, now: float, at_least: float | None, expected: datetime
) -> None:
    result = next_check(
        PACING, attempts=attempts, submitted_at=T0, now=at(now), at_least_seconds=at_least
    )
    assert result == expected


@pytest.mark.parametrize(
    ("webhook", "expected"),
    [(None, at(205)), (at(150), at(205)), (at(199), at(200)), (at(200), at(200))],
)
def test_after_a_read_finds_it_running_a_webhook_during_the_read_makes_it_due_now(
    webhook: datetime | None, expected: datetime
) -> None:
    result = next_check_after_read(
        PACING,
        attempts=1,
        submitted_at=T0,
        now=at(200),
        read_claimed_at=at(199),
        last_webhook_at=webhook,
    )
    assert result == expected


@pytest.mark.parametrize(
    ("now", "not_found", "expired", "reason"),
    [
        (100, True, False, None),  # a young job's 404: Visma may not have registered it yet
        (100, False, False, None),
        (3600, True, True, "no longer knows the job (404)"),
        (4000, False, True, "no answer from Visma before the TTL passed: timed out"),
    ],
)
def test_decide_expiry_after_a_failed_read(
    now: float, not_found: bool, expired: bool, reason: str | None
) -> None:
    outcome = decide_expiry(
        PACING,
        submitted_at=T0,
        now=at(now),
        not_found=not_found,
        http_status=404 if not_found else None,
        message="timed out",
    )
    if not expired:
        assert outcome is None
        return
    assert outcome is not None and outcome.state is JobState.EXPIRED
    assert reason is not None and outcome.note is not None and reason in outcome.note


def test_an_unknown_submission_waits_then_expires_saying_why() -> None:
    assert decide_unknown_submission(PACING, submitted_at=T0, now=at(3599), why="x") is None
    outcome = decide_unknown_submission(
        PACING, submitted_at=T0, now=at(3600), why="HTTP 504 from a gateway"
    )
    assert outcome is not None and outcome.state is JobState.EXPIRED
    assert outcome.note is not None
    assert "fate is unknown (HTTP 504 from a gateway)" in outcome.note
    assert "was not re-sent" in outcome.note
