"""`visma-hooks issues`, `issue ID` and `resend --issue ID` against a real database."""

from __future__ import annotations

import asyncio
import json

import pytest

from service.cli import main
from tests.conftest import WEBHOOK_SECRET
from tests.factories import failed_issue


@pytest.fixture(name="cli_env")
def fixture_cli_env(clean_database: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("DATABASE_URL", clean_database)
    monkeypatch.setenv("VISMA_WEBHOOK_SECRETS", WEBHOOK_SECRET)
    return clean_database


def test_issues_are_listed_shown_and_resent_once(
    cli_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    issue_id = asyncio.run(failed_issue(cli_env, 3))
    other = asyncio.run(failed_issue(cli_env, 1, fault_code="999"))

    assert main(["issues"]) == 0
    out = capsys.readouterr().out
    assert "issues 1-2 of 2" in out and "fault 12027" in out and issue_id[:8] in out

    assert main(["issues", "--json", "--state", "open"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["totalCount"] == 2
    assert {i["id"]: i["jobCount"] for i in listed["items"]} == {issue_id: 3, other: 1}
    assert main(["issues", "--state", "closed"]) == 2
    assert "state 'closed'" in capsys.readouterr().err

    assert main(["issue", issue_id]) == 0
    out = capsys.readouterr().out
    assert f"issue {issue_id}" in out and "jobs: 3" in out and "POST /v1/salesorder" in out
    assert main(["issue", "no-such-issue"]) == 1
    assert "no issue" in capsys.readouterr().err

    assert main(["resend", "--issue", issue_id, "--dry-run", "--json"]) == 0
    dry = json.loads(capsys.readouterr().out)
    assert dry["count"] == 3 and len(dry["jobIds"]) == 3

    assert main(["resend", "--issue", issue_id]) == 0
    out = capsys.readouterr().out
    assert "3 of 3 job(s) resent" in out
    assert main(["issue", issue_id, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert all(job["resentAs"] for job in shown["jobs"]["items"])

    # Nothing left: a second resend resends nothing.
    assert main(["resend", "--issue", issue_id, "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert (again["state"], again["total"], again["done"]) == ("done", 0, 0)
