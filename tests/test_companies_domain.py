"""The core's rules for many companies: which company a submission is for, the list filter."""

from __future__ import annotations

import pytest

from service.domain import (
    InvalidInput,
    choose_tenant,
    job_json,
    parse_job_create,
    parse_job_query,
    slack_message,
)


def test_choose_tenant_takes_the_named_company_or_the_first() -> None:
    assert choose_tenant(None, ["a", "b"]) == "a"
    assert choose_tenant("b", ["a", "b"]) == "b"
    assert choose_tenant(None, []) is None
    with pytest.raises(InvalidInput, match="'c' is not one of"):
        choose_tenant("c", ["a", "b"])


def test_submission_tenant_is_bounded() -> None:
    assert parse_job_create(b'{"method": "GET", "path": "/v1/x", "tenant": "b"}').tenant == "b"
    for bad in (b'""', b'"' + b"x" * 65 + b'"', b"7"):
        with pytest.raises(InvalidInput, match="tenant"):
            parse_job_create(b'{"method": "GET", "path": "/v1/x", "tenant": ' + bad + b"}")


def test_job_query_filters_by_companies() -> None:
    job_filter, _ = parse_job_query([("tenant", "a, b")])
    assert job_filter.tenants == ("a", "b")
    with pytest.raises(InvalidInput, match="tenant"):
        parse_job_query([("tenant", "x" * 65)])


def test_job_json_shows_a_job_from_before_companies_as_the_default_companys() -> None:
    row = {
        "id": "j",
        "state": "accepted",
        "method": "GET",
        "path": "/v1/x",
        "notify": True,
        "submitted_at": "2026-12-02T10:00:00Z",
        "last_modified_at": "2026-12-02T10:00:00Z",
    }
    assert job_json(row, default_tenant="first")["tenant"] == "first"
    assert job_json({**row, "tenant": "second"}, default_tenant="first")["tenant"] == "second"


def test_a_job_alert_in_slack_names_the_company_escaped() -> None:
    alert = {
        "kind": "job.failed",
        "summary": "Job failed: POST /v1/customer",
        "job": {"id": "j", "method": "POST", "path": "/v1/customer", "tenant": "<!channel>"},
    }
    text = slack_message(alert)["blocks"][0]["text"]["text"]
    assert "*Company:* &lt;!channel&gt;" in text
