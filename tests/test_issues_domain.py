"""Which issue a failure belongs to, and which moves a person may make (pure decisions)."""

from __future__ import annotations

import pytest

from service.domain import (
    InvalidState,
    IssueAction,
    issue_cause,
    issue_summary,
    move_issue,
    path_template,
)
from service.domain.issues import expiry_reason
from service.domain.lifecycle import EXPIRED_FORGOTTEN, EXPIRED_NO_ANSWER


@pytest.mark.parametrize(
    ("path", "template"),
    [
        ("/v1/customerInvoice/000123/action/release", "/v1/customerInvoice/{id}/action/release"),
        ("/v1/salesorder", "/v1/salesorder"),
        ("/v2/salesorder/SO/0001", "/v2/salesorder/SO/{id}"),
        (
            "/v1/supplier/b64(QUJDLzEy)/contact?x=1",
            "/v1/supplier/{id}/contact",
        ),
        ("/v1/inventory/5f0c2a4e-7e3b-4a1f-9a43-3e1f2b7c9d10", "/v1/inventory/{id}"),
        # A record named by letters alone cannot be told from an entity's name: kept.
        ("/v1/customer/ACME", "/v1/customer/ACME"),
    ],
)
def test_path_template_replaces_the_ids_of_records(path: str, template: str) -> None:
    assert path_template(path) == template


def cause(**overrides: object) -> object:
    values: dict[str, object] = {
        "tenant": "1234",
        "state": "failed",
        "error": {"message": "No license for this company.", "faultCode": "12027"},
        "http_status": 500,
        "note": None,
        "method": "post",
        "path": "/v1/customerInvoice/1/action/release",
    }
    return issue_cause(**(values | overrides))  # type: ignore[arg-type]


def test_same_cause_on_other_records_is_one_issue() -> None:
    first = cause()
    second = cause(path="/v1/customerInvoice/2/action/release", http_status=400)
    assert first is not None and second is not None
    # The fault code says more than the status it came with.
    assert first.key == second.key
    assert first.method == "POST" and first.http_status is None


def test_company_outcome_fault_and_path_each_make_another_issue() -> None:
    base = cause()
    others = [
        cause(tenant="5678"),
        cause(state="rejected"),
        cause(error={"message": "x", "faultCode": "1"}),
        cause(method="PUT"),
        cause(path="/v1/salesorder"),
    ]
    keys = {c.key for c in others if c is not None}
    assert base is not None and base.key not in keys and len(keys) == len(others)


def test_without_a_fault_code_the_http_status_is_the_cause() -> None:
    bad = cause(error={"message": "bad"}, http_status=400)
    worse = cause(error={"message": "bad"}, http_status=500)
    assert bad is not None and worse is not None
    assert bad.http_status == 400 and bad.key != worse.key


def test_an_expiry_is_grouped_by_why_it_expired() -> None:
    forgotten = cause(
        state="expired", error=None, http_status=None, note=EXPIRED_FORGOTTEN.format(status=404)
    )
    forgotten_again = cause(
        state="expired", error=None, http_status=None, note=EXPIRED_FORGOTTEN.format(status=410)
    )
    no_answer = cause(
        state="expired", error=None, http_status=None, note=EXPIRED_NO_ANSWER.format(message="x")
    )
    assert forgotten is not None and forgotten_again is not None and no_answer is not None
    assert forgotten.expiry_reason == "forgotten" and no_answer.expiry_reason == "no_answer"
    assert forgotten.key == forgotten_again.key != no_answer.key
    assert expiry_reason("something else") == "unknown"


def test_a_success_makes_no_issue() -> None:
    assert cause(state="succeeded") is None
    assert cause(state="running") is None


def test_moves() -> None:
    assert move_issue("i", "open", IssueAction.ACKNOWLEDGE) == "acknowledged"
    assert move_issue("i", "acknowledged", IssueAction.RESOLVE) == "resolved"
    assert move_issue("i", "open", IssueAction.RESOLVE) == "resolved"
    assert move_issue("i", "resolved", IssueAction.IGNORE) == "ignored"
    # The state it is in already: no change, no error.
    assert move_issue("i", "resolved", IssueAction.RESOLVE) == "resolved"
    with pytest.raises(InvalidState, match="issue i is resolved: it cannot be acknowledged"):
        move_issue("i", "resolved", IssueAction.ACKNOWLEDGE)
    with pytest.raises(InvalidState):
        move_issue("i", "ignored", IssueAction.RESOLVE)


def test_summary_names_the_cause() -> None:
    issue = {
        "tenant": "1234",
        "kind": "failed",
        "faultCode": "12027",
        "httpStatus": None,
        "method": "POST",
        "pathTemplate": "/v1/salesorder",
    }
    assert (
        issue_summary(issue, reopened=False)
        == "Issue opened: 1234: jobs failed (fault 12027) on POST /v1/salesorder"
    )
    expired = issue | {"kind": "expired", "faultCode": None, "expiryReason": "no_answer"}
    assert "reopened" in issue_summary(expired, reopened=True)
    assert "(no answer)" in issue_summary(expired, reopened=True)
