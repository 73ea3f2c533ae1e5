"""The `visma-hooks` command line against a real database and a real simulator server."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
import uvicorn

from service import store
from service.cli import main
from service.simulator import Outcome, SimulatorConfig, create_simulator_app
from service.store import create_engine, create_sessionmaker
from tests.conftest import WEBHOOK_SECRET
from tests.servers import bind_loopback, url_of


@pytest.fixture(name="cli_env")
def fixture_cli_env(clean_database: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("DATABASE_URL", clean_database)
    monkeypatch.setenv("VISMA_WEBHOOK_SECRETS", WEBHOOK_SECRET)
    return clean_database


@pytest.fixture(name="simulator")
def fixture_simulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """The simulator served by uvicorn in a thread (the CLI runs its own event loop)."""
    sock = bind_loopback()
    app = create_simulator_app(SimulatorConfig(webhook_url=None))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    base = url_of(sock)
    for name, value in {
        "VISMA_API_URL": base,
        "VISMA_TOKEN_URL": f"{base}/connect/token",
        "VISMA_CLIENT_ID": "sim-client",
        "VISMA_CLIENT_SECRET": "sim-secret",
        "VISMA_TENANT_ID": "sim-tenant",
    }.items():
        monkeypatch.setenv(name, value)
    yield app.state.simulator
    server.should_exit = True
    thread.join(timeout=5)


def wait_until(condition: Callable[[], bool], *, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def add_job(database_url: str, job_id: str, **fields: object) -> None:
    async def insert() -> None:
        engine = create_engine(database_url)
        now = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
        try:
            async with create_sessionmaker(engine).begin() as session:
                values = {
                    "state": "failed",
                    "method": "POST",
                    "path": "/v1/salesorder",
                    "tags": {"orderRef": "SO-1"},
                    "notify": True,
                    "submitted_at": now,
                    "last_modified_at": now,
                    **fields,
                }
                await store.add_job(session, store.Job(id=job_id, **values))
                await store.add_event(
                    session,
                    job_id,
                    kind="failed",
                    source="webhook",
                    at=now,
                    detail={"error": "No license for this company."},
                )
        finally:
            await engine.dispose()

    asyncio.run(insert())


def test_jobs_lists_jobs_in_a_table(cli_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    add_job(cli_env, "job-a")
    add_job(cli_env, "job-b", state="succeeded")
    assert main(["jobs", "--state", "failed"]) == 0
    out = capsys.readouterr().out
    assert "job-a" in out and "failed" in out
    assert "job-b" not in out
    assert main(["jobs", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["totalCount"] == 2


def test_job_shows_error_hint_and_timeline(
    cli_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    add_job(
        cli_env,
        "job-c",
        error={
            "type": "IPPException",
            "message": "No license for this company.",
            "faultCode": "12027",
            "messageId": None,
            "body": None,
        },
        hint="The integration user lacks the API user role",
    )
    assert main(["job", "job-c"]) == 0
    out = capsys.readouterr().out
    assert "No license for this company. (fault 12027)" in out
    assert "hint:" in out and "API user role" in out
    assert "timeline" in out and "webhook" in out


def test_job_unknown_id_is_an_error(cli_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["job", "nope"]) == 1
    assert "no job with id 'nope'" in capsys.readouterr().err


def test_submit_sends_the_job_to_visma(
    cli_env: str, simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "submit",
            "--path",
            "/v1/customer",
            "--body",
            '{"name": "Acme"}',
            "--tag",
            "orderRef=SO-9",
            "--json",
        ]
    )
    assert code == 0
    job = json.loads(capsys.readouterr().out)
    assert job["state"] == "accepted" and job["tags"] == {"orderRef": "SO-9"}
    visma_job = simulator.jobs[job["vismaJobId"]]
    assert visma_job.request_headers["erp-api-background"] == (
        f"subscription:vh-job-id={job['id']},orderRef=SO-9"
    )


def test_submit_rejected_exits_non_zero(
    cli_env: str, simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    simulator.script(Outcome(kind="reject", reject_status=403, message="Forbidden."))
    assert main(["submit", "--path", "/v1/customer", "--body", "{}"]) == 1
    out = capsys.readouterr().out
    assert "rejected" in out and "Forbidden." in out


def test_submit_refuses_bad_tags(cli_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["submit", "--path", "/v1/customer", "--tag", "bad key=1"]) == 2  # a usage mistake
    assert "tag key 'bad key'" in capsys.readouterr().err


def test_migrate_reports_the_database(cli_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["migrate"]) == 0
    assert "database is up to date" in capsys.readouterr().out


def test_submit_resend_sends_a_new_linked_job(
    cli_env: str, simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    simulator.script(Outcome(kind="reject", reject_status=503, message="Try later."))
    assert main(["submit", "--path", "/v1/customer", "--body", '{"n": 1}', "--json"]) == 1
    old = json.loads(capsys.readouterr().out)
    assert old["state"] == "rejected"
    assert main(["submit", "--resend", old["id"], "--json"]) == 0
    new = json.loads(capsys.readouterr().out)
    assert new["state"] == "accepted" and new["id"] != old["id"]
    assert new["events"][0]["detail"]["resentFrom"] == old["id"]
    assert simulator.jobs[new["vismaJobId"]].request_body == b'{"n":1}'
    assert main(["job", old["id"], "--json"]) == 0
    old_after = json.loads(capsys.readouterr().out)
    assert old_after["events"][-1]["kind"] == "resent"
    assert old_after["events"][-1]["detail"]["newJobId"] == new["id"]
    # Visma has the new job now: sending it again could do the work twice.
    assert main(["submit", "--resend", new["id"]]) == 1
    assert "could do the work twice" in capsys.readouterr().err


def test_poll_once_reads_due_jobs(
    cli_env: str, simulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POLL_AFTER_SECONDS", "0.01")
    simulator.script(Outcome(kind="success", webhook="drop"))
    assert main(["submit", "--path", "/v1/customer", "--body", "{}", "--json"]) == 0
    job = json.loads(capsys.readouterr().out)
    # Once the simulated job is done, its poll (due 0.01 s after the 202) finds the outcome.
    wait_until(lambda: simulator.jobs[job["vismaJobId"]].done)
    assert main(["poll"]) == 0
    assert "read the state of 1 job(s)" in capsys.readouterr().out
    assert main(["job", job["id"], "--json"]) == 0
    polled = json.loads(capsys.readouterr().out)
    assert polled["state"] == "succeeded" and polled["resolvedBy"] == "poll"


def test_submit_and_jobs_name_the_company(
    cli_env: str, simulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    simulator.config.other_tenant_ids = ["sim-tenant-2"]
    monkeypatch.setenv("VISMA_TENANT_ID", "sim-tenant,sim-tenant-2")
    assert main(["submit", "--path", "/v1/customer", "--json"]) == 0
    default = json.loads(capsys.readouterr().out)
    assert main(["submit", "--path", "/v1/customer", "--tenant", "sim-tenant-2", "--json"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert (default["tenant"], second["tenant"]) == ("sim-tenant", "sim-tenant-2")
    assert simulator.jobs[second["vismaJobId"]].tenant == "sim-tenant-2"

    assert main(["jobs", "--tenant", "sim-tenant-2", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [item["id"] for item in listed["items"]] == [second["id"]]
    assert main(["job", second["id"]]) == 0
    assert "tenant: sim-tenant-2" in capsys.readouterr().out

    assert main(["submit", "--path", "/v1/customer", "--tenant", "elsewhere"]) != 0
    assert "'elsewhere' is not one of" in capsys.readouterr().err
