"""`visma-hooks submit`: safe retries (--idempotency-key), files of jobs (--batch), a wait
that ends (--timeout), and a budget the service recorded, against a real database and a real
simulator server."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path

import pytest

from service import cli, store
from service.cli import WAIT_TIMED_OUT, main
from service.flows import utcnow
from service.store import create_engine, create_sessionmaker
from tests.test_cli import fixture_cli_env, fixture_simulator  # noqa: F401 (fixtures)


def submits(simulator: object) -> list:
    return [r for r in simulator.requests if r.kind == "submit"]  # type: ignore[attr-defined]


def test_submit_with_an_idempotency_key_sends_once(
    cli_env: str, simulator: object, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["submit", "--path", "/v1/customer", "--body", '{"n": 1}', "--json"]
    assert main([*args, "--idempotency-key", "order-7"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert main([*args, "--idempotency-key", "order-7"]) == 0
    captured = capsys.readouterr()
    again = json.loads(captured.out)
    assert again["id"] == first["id"] and again["idempotencyKey"] == "order-7"
    assert "nothing was sent" in captured.err
    assert len(submits(simulator)) == 1
    # The same key for another request: refused, saying why.
    changed = ["submit", "--path", "/v1/customer", "--body", '{"n": 2}']
    assert main([*changed, "--idempotency-key", "order-7"]) == 1
    assert "different request" in capsys.readouterr().err
    assert main([*changed, "--idempotency-key", "tab\tkey"]) == 2  # a usage mistake
    assert "Idempotency-Key must be" in capsys.readouterr().err


def test_submit_batch_stores_each_line_and_names_every_refusal(
    cli_env: str, simulator: object, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = [
        json.dumps({"method": "POST", "path": "/v1/customer", "body": {"n": 1}}),
        "",
        "{not json",
        json.dumps({"method": "POST", "path": "/v1/customer", "idempotencyKey": "k-1"}),
        json.dumps({"method": "POST", "path": "/elsewhere"}),
    ]
    file = tmp_path / "night.jsonl"
    file.write_text("\n".join(lines) + "\n")
    assert main(["submit", "--batch", str(file)]) == 1  # some lines were refused
    out = capsys.readouterr().out
    assert "created 2, repeated 0" in out and "refused 2" in out
    assert "line 3: the line is not JSON" in out
    assert "line 5: path" in out
    # The file again: the keyed line is a repeat, the other a new job (it has no key).
    assert main(["submit", "--batch", str(file), "--json"]) == 1
    summary = json.loads(capsys.readouterr().out)
    assert (summary["created"], summary["repeated"]) == (1, 1)
    assert [r["line"] for r in summary["refused"]] == [3, 5]
    # Stored to be sent by a running service (its worker), not by the command.
    assert submits(simulator) == []
    assert main(["jobs", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["items"]
    assert len(listed) == 3 and {j["state"] for j in listed} == {"submitted"}


def test_submit_batch_of_a_missing_file_is_a_clear_error(
    cli_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["submit", "--batch", "/nowhere/jobs.jsonl"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_submit_wait_ends_at_its_timeout_with_exit_status_3(
    cli_env: str, simulator: object, capsys: pytest.CaptureFixture[str]
) -> None:
    # No service runs here to resolve the job, so it stays accepted.
    args = ["submit", "--path", "/v1/customer", "--wait", "--timeout", "0.5", "--json"]
    assert main(args) == WAIT_TIMED_OUT
    captured = capsys.readouterr()
    assert json.loads(captured.out)["state"] == "accepted"
    assert "still accepted after --timeout 0.5 s" in captured.err


def test_submit_wait_says_what_it_waits_for_and_when_nothing_resolves_the_job(
    cli_env: str,
    simulator: object,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("POLL_AFTER_SECONDS", "0.01")  # its state read is due at once
    monkeypatch.setattr(cli, "UNCLAIMED_SECONDS", 0.5)
    args = ["submit", "--path", "/v1/customer", "--wait", "--timeout", "3"]
    assert main(args) == WAIT_TIMED_OUT
    err = capsys.readouterr().err
    assert "is accepted; waiting for it to end" in err
    assert "nothing is resolving job" in err and "visma-hooks serve" in err


@pytest.mark.parametrize("timeout", ["0", "-1", "soon", "nan"])
def test_submit_wait_timeout_must_be_positive(
    cli_env: str, timeout: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["submit", "--path", "/v1/customer", "--wait", "--timeout", timeout])
    assert exited.value.code == 2
    assert "seconds above 0" in capsys.readouterr().err


def test_submit_does_not_send_into_a_budget_the_service_recorded_as_spent(
    cli_env: str, simulator: object, capsys: pytest.CaptureFixture[str]
) -> None:
    async def record_spent() -> None:
        engine = create_engine(cli_env)
        try:
            async with create_sessionmaker(engine).begin() as session:
                now = utcnow()
                await store.record_budgets(
                    session,
                    [
                        {
                            "tenant": "sim-tenant",
                            "limit": 100,
                            "remaining": 0,
                            "reset_at": now + timedelta(minutes=10),
                            "paused_until": now,
                            "sharers": 2.0,
                            "recorded_at": now,
                        }
                    ],
                )
        finally:
            await engine.dispose()

    asyncio.run(record_spent())
    assert main(["submit", "--path", "/v1/customer", "--json"]) == 0
    job = json.loads(capsys.readouterr().out)
    # It waits for the reset (a replica sends it then) instead of earning a 429 now.
    assert job["state"] == "submitted"
    [deferred] = [e for e in job["events"] if e["kind"] == "send_deferred"]
    assert deferred["source"] == "budget" and deferred["detail"]["waitSeconds"] > 500
    assert submits(simulator) == []
