"""The pacing rule: each company's hourly budget, from Visma's headers (no I/O, a fake clock)."""

from __future__ import annotations

import pytest

from service.visma.client import budget_wait
from service.visma.pacing import (
    EDGE_MARGIN_SECONDS,
    CompanyBudget,
    not_before,
    read_spacing,
    reserve_for,
)
from tests.budget_hour import SPENT, simulate


def headers(limit: int, remaining: int, reset: float) -> dict[str, str]:
    return {
        "x-ratelimit-limit": str(limit),
        "x-ratelimit-remaining": str(remaining),
        "x-ratelimit-reset": str(reset),
    }


def test_read_spacing_spreads_what_remains_above_the_reserve_over_the_time_to_reset() -> None:
    reserve = reserve_for(15000, 0.1)
    assert reserve == 1500
    assert read_spacing(remaining=15000, seconds_to_reset=3600, reserve=reserve) == pytest.approx(
        3600 / 13500
    )
    assert read_spacing(remaining=1600, seconds_to_reset=600, reserve=reserve) == 6.0
    assert read_spacing(remaining=1500, seconds_to_reset=600, reserve=reserve) is None


def test_a_company_nobody_has_heard_of_goes_at_once() -> None:
    budget = CompanyBudget("c", reserve_share=0.1)
    assert budget.admit("read", now=0) == 0
    assert budget.admit("submit", now=0) == 0
    assert budget.snapshot(now=0).limit is None


def test_reads_wait_at_the_reserve_while_submissions_still_go() -> None:
    budget = CompanyBudget("c", reserve_share=0.1)
    budget.observe(headers(100, 10, 600), now=0)
    reset = not_before(600)  # "600" may be 600.9 rounded down
    assert budget.admit("read", now=0) == pytest.approx(reset)
    assert [budget.admit("submit", now=0) for _ in range(10)] == [0] * 10
    assert budget.admit("submit", now=0) == pytest.approx(reset)  # none left: to the reset
    assert budget.admit("read", now=reset) == 0  # the window reset: whole again


def test_reads_are_spaced_after_a_short_burst() -> None:
    budget = CompanyBudget("c", reserve_share=0.0)
    budget.observe(headers(100, 100, 100), now=0)  # one read a second
    burst = [budget.admit("read", now=0) for _ in range(5)]
    assert burst == [0] * 5
    assert 0.5 < budget.admit("read", now=0) <= 1.1  # about a second: 100 left for 100 s
    assert budget.admit("read", now=1.1) == 0


def test_a_429_pauses_the_company_for_its_whole_retry_after() -> None:
    budget = CompanyBudget("c", reserve_share=0.1)
    answer = headers(15000, 0, 3000) | {"retry-after": "3000"}
    budget.observe(answer, now=0)
    budget.pause(budget_wait(answer), now=0)
    end = 3001 + EDGE_MARGIN_SECONDS  # 3000 whole seconds: up to 3001, rounded down
    assert budget.admit("submit", now=1) == pytest.approx(end - 1)
    assert budget.admit("read", now=end - 0.5) == pytest.approx(0.5)
    assert budget.snapshot(now=10).paused_seconds == pytest.approx(end - 10)
    assert budget.admit("submit", now=end) == 0


def test_a_reset_in_whole_seconds_is_not_reached_before_the_next_second_has_passed() -> None:
    # Announced "10" while 10.9 s were left (rounded down): sending at 10 s would be early.
    budget = CompanyBudget("c", reserve_share=0.0)
    budget.observe(headers(100, 0, 10), now=0)
    assert budget.admit("submit", now=10) > 0
    assert budget.admit("submit", now=10.99) > 0
    assert budget.admit("submit", now=11 + EDGE_MARGIN_SECONDS) == 0


def test_a_reset_of_0_is_less_than_a_second_away_not_unknown() -> None:
    budget = CompanyBudget("c", reserve_share=0.0)
    budget.observe(headers(100, 0, 0), now=0)
    assert budget.admit("submit", now=0) == pytest.approx(1 + EDGE_MARGIN_SECONDS)
    assert budget.snapshot(now=0).reset_seconds == pytest.approx(1 + EDGE_MARGIN_SECONDS)
    assert budget.admit("submit", now=1 + EDGE_MARGIN_SECONDS) == 0


def test_a_fractional_reset_is_taken_as_exact_with_the_margin() -> None:
    budget = CompanyBudget("c", reserve_share=0.0)
    budget.observe(headers(100, 0, 2.5), now=0)  # type: ignore[arg-type]
    assert budget.admit("submit", now=0) == pytest.approx(2.5 + EDGE_MARGIN_SECONDS)


@pytest.mark.parametrize(
    ("given", "wait"),
    [
        ("120", 121 + EDGE_MARGIN_SECONDS),
        ("0", 1 + EDGE_MARGIN_SECONDS),
        ("2.5", 2.5 + EDGE_MARGIN_SECONDS),
        ("nan", 1.0),
        ("1e12", 86400.0),
        ("soon", 1.0),
    ],
)
def test_budget_wait_is_the_retry_after_in_full_but_bounded(given: str, wait: float) -> None:
    assert budget_wait({"retry-after": given}) == wait


def test_replicas_learn_they_share_the_budget() -> None:
    budget = CompanyBudget("c", reserve_share=0.0)
    budget.observe(headers(3600, 3600, 3600), now=0)
    for second in range(1, 200):
        budget.admit("read", now=second)
        # Two other replicas spend as much: the remaining falls by three per read of ours.
        budget.observe(headers(3600, 3600 - 3 * second, 3600 - second), now=second)
    spacing = budget.snapshot(now=200).read_spacing_seconds
    assert spacing is not None and spacing == pytest.approx(3 * 3400 / 3003, rel=0.05)


@pytest.mark.parametrize("replicas", [1, 3])
def test_a_simulated_hour_spends_the_budget_evenly_without_a_429(replicas: int) -> None:
    hour = simulate("budget", replicas=replicas)
    assert hour.refused == 0
    assert hour.spent <= hour.limit - reserve_for(hour.limit, 0.1) + 1
    assert hour.spent >= 0.85 * hour.limit
    even = hour.spent / len(hour.sent)
    assert all(0.7 * even <= bucket <= 1.3 * even for bucket in hour.sent), hour.sent
    assert hour.submissions_sent == hour.submissions_offered
    assert hour.longest_submission_wait == 0


@pytest.mark.parametrize("replicas", [1, 3])
def test_submissions_parked_until_the_reset_go_after_it_not_at_it(replicas: int) -> None:
    # More submissions than the budget holds: they wait for the reset, announced rounded down.
    hour = simulate("budget", replicas=replicas, **SPENT)
    assert hour.spent == hour.limit
    assert hour.refused_at_edge == 0
    # ... and once the new window opens, the waiting ones go in it at once.
    assert hour.submissions_sent > hour.spent


def test_the_old_fixed_pacing_spent_the_hour_in_minutes() -> None:
    hour = simulate("fixed", replicas=3)
    assert hour.sent[0] == hour.limit and hour.refused > 0
    assert hour.longest_submission_wait > 1800  # submissions waited for the next window


def test_without_a_reset_time_nothing_goes_once_the_budget_is_spent() -> None:
    budget = CompanyBudget("c", reserve_share=0.5)
    budget.observe({"x-ratelimit-limit": "4", "x-ratelimit-remaining": "3"}, now=0)
    assert budget.admit("read", now=0) == 0
    assert budget.admit("read", now=0) > 0  # at the reserve (2)
    assert [budget.admit("submit", now=0) for _ in range(2)] == [0, 0]
    assert budget.admit("submit", now=0) > 0
