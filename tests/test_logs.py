"""Log lines: JSON or console, a request id and a job id bound through async code, and one
line (not a traceback a pass) for a failure that repeats."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from service.domain import redact_url
from service.logs import FailureLog, configure_logging
from service.store import create_engine, create_readers, create_sessionmaker
from service.web import RequestId
from service.workers import HousekeepingWorker
from tests.cli_process import serving, wait_ready
from tests.sink import SIGNING_SECRET, Sink


@pytest.fixture(name="json_logs")
def fixture_json_logs(capsys: pytest.CaptureFixture[str]):
    yield capsys
    root = logging.getLogger()
    for handler in [h for h in root.handlers if h.get_name() == "visma-hooks"]:
        root.removeHandler(handler)


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


async def test_request_id_is_on_every_line_the_request_logs(json_logs) -> None:
    async def hello(_request: Request) -> PlainTextResponse:
        await asyncio.sleep(0)  # the binding survives a suspension
        logging.getLogger("service.test").info("handling\nforged line")
        return PlainTextResponse("hi")

    configure_logging(level="info", fmt="json")  # here: pytest gives each phase its stderr
    app = Starlette(routes=[Route("/", hello)], middleware=[Middleware(RequestId)])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        given = await client.get("/", headers={"X-Request-ID": "abc-123"})
        made = await client.get("/", headers={"X-Request-ID": "bad id\n with spaces"})
    assert given.headers["x-request-id"] == "abc-123"
    assert len(made.headers["x-request-id"]) == 32  # a new one, not the client's text
    lines = [
        line
        for line in json_lines(json_logs.readouterr().err)
        if line["event"].startswith("handling")
    ]
    assert [line["request_id"] for line in lines] == ["abc-123", made.headers["x-request-id"]]
    assert all(line["level"] == "info" and "timestamp" in line for line in lines)


def test_console_lines_escape_newlines(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(level="info", fmt="console")
    try:
        logging.getLogger("service.test").warning("a %s", "b\nFAKE ERROR line")
    finally:
        root = logging.getLogger()
        for handler in [h for h in root.handlers if h.get_name() == "visma-hooks"]:
            root.removeHandler(handler)
    err = capsys.readouterr().err
    assert "b\\nFAKE ERROR line" in err
    assert not any(line.startswith("FAKE ERROR") for line in err.splitlines())


def test_failure_log_says_a_repeated_cause_once_then_now_and_then(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    failures = FailureLog(
        logging.getLogger("service.test"), "a pass", every_seconds=60, clock=lambda: now[0]
    )
    with caplog.at_level(logging.INFO):
        for second in range(120):
            now[0] = float(second)
            failures.failed(ConnectionRefusedError("connection refused"))
        failures.failed(TimeoutError("another cause"))
        failures.succeeded()
    messages = [record.getMessage() for record in caplog.records]
    assert messages == [
        "a pass failed: ConnectionRefusedError: connection refused",
        "a pass still failing (60 more times): ConnectionRefusedError: connection refused",
        "a pass failed: TimeoutError: another cause",
        "a pass works again after 0 more failures",
    ]
    assert all(record.exc_info is None for record in caplog.records)  # tracebacks: debug only


async def test_a_worker_failing_every_pass_writes_one_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'never-migrated.db'}")  # no tables
    worker = HousekeepingWorker(
        create_sessionmaker(engine), readers=create_readers(engine), every_seconds=0.01
    )
    try:
        with caplog.at_level(logging.INFO):
            worker.start()
            deadline = asyncio.get_running_loop().time() + 10
            while not worker._failures._repeats >= 20:
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.01)
            await worker.stop()
    finally:
        await engine.dispose()
    lines = [r for r in caplog.records if r.name == "service.workers.housekeeping"]
    assert len(lines) == 1, [r.getMessage() for r in lines]
    assert lines[0].getMessage().startswith("housekeeping pass failed: OperationalError")
    assert "\n" not in lines[0].getMessage()


def test_serve_writes_json_lines(tmp_path: Path) -> None:
    settings = {"DATABASE_URL": f"sqlite:///{tmp_path / 'hooks.db'}", "LOG_FORMAT": "json"}
    with serving(cwd=tmp_path, log=tmp_path / "serve.log", **settings) as server:
        wait_ready(server)
        httpx.get(f"{server.url}/metrics")
    lines = json_lines(server.stderr())
    assert any("Application startup complete" in line["event"] for line in lines), server.stderr()
    assert not [line for line in lines if line["logger"] == "uvicorn.access"]  # no access log
    assert all({"event", "level", "timestamp", "logger"} <= line.keys() for line in lines)


async def test_no_outbound_url_path_or_query_reaches_the_log(json_logs) -> None:
    # The service's outbound calls (alerts, callbacks, Visma) go through httpx, whose own
    # logger would write each full URL at info: a Slack webhook's path is its secret.
    configure_logging(level="info", fmt="json")
    secret = "/services/T0000/B0000/XXXXsecretXXXX?token=hidden"
    app = Starlette(
        routes=[Route("/{rest:path}", lambda _r: PlainTextResponse("ok"), methods=["POST"])]
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as client:
        answer = await client.post(f"http://hooks.example{secret}", json={"text": "hi"})
    assert answer.status_code == 200
    logging.getLogger("service.test").info("sent")  # the handler is there and writes info
    text = json_logs.readouterr().err
    assert '"sent"' in text
    assert "XXXXsecretXXXX" not in text and "hidden" not in text


def test_a_database_error_is_told_without_its_statement_and_parameters() -> None:
    from sqlalchemy.exc import OperationalError

    from service.logs import reason

    exc = OperationalError("INSERT INTO deliveries VALUES (?)", ("secret body",), Exception("gone"))
    told = reason(exc)
    assert told == "OperationalError: (builtins.Exception) gone"
    assert "secret body" not in told


async def test_job_id_is_on_the_lines_a_state_read_writes(
    clean_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from datetime import UTC, datetime

    from service.app import resolve_settings
    from service.flows import resolve_due_jobs
    from tests.factories import insert_job
    from tests.harness import in_process

    def visma(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/token"):
            return httpx.Response(200, json={"access_token": "t", "expires_in": 3600})
        raise RuntimeError("a bug in reading the state")

    async with in_process(clean_database, visma_transport=httpx.MockTransport(visma)) as harness:
        jobs = [
            await insert_job(
                harness.resources.sessions,
                state="accepted",
                visma_job_id=f"visma-{n}",
                next_check_at=datetime.now(UTC),
            )
            for n in range(3)
        ]
        configure_logging(level="info", fmt="json")
        try:
            claimed = await resolve_due_jobs(
                harness.resources.sessions,
                harness.resources.visma,
                resolve_settings(harness.resources.settings),
            )
        finally:
            root = logging.getLogger()
            for handler in [h for h in root.handlers if h.get_name() == "visma-hooks"]:
                root.removeHandler(handler)
    assert claimed == 3
    lines = [
        line for line in json_lines(capsys.readouterr().err) if "reading a job" in line["event"]
    ]
    # Three jobs failing for one cause: one line, naming the job it came from.
    assert len(lines) == 1, lines
    assert lines[0]["job_id"] in jobs
    assert "RuntimeError: a bug in reading the state" in lines[0]["event"]


async def test_serve_logs_no_outbound_urls_secret_parts(tmp_path: Path, sink: Sink) -> None:
    """httpx would write each alert's full URL at info; a Slack webhook's path is its secret.
    The process's own lines name a target only as the API shows it (`redact_url`)."""
    slack_secret = "T0SLACKSECRET-B0SLACKSECRET-xoxSLACKSECRETPATH"
    hook_secret = "HOOKSECRETPATH"
    slack_url = f"{sink.url}/slack/{slack_secret}?token=QUERYSECRET"
    hook_url = f"{sink.url}/hook/{hook_secret}"
    sink.fail_next[f"/hook/{hook_secret}"] = 1  # one failed attempt: a line that names it
    settings = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'hooks.db'}",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "debug",
        "STATUS_WEBHOOK_TOKEN": "status-token-logs",
        "ALERT_SLACK_URLS": slack_url,
        "ALERT_WEBHOOK_URLS": hook_url,
        "ALERT_SIGNING_SECRET": SIGNING_SECRET,
        "ALERT_POLL_SECONDS": "0.05",
        "ALERT_RETRY_BASE_SECONDS": "0.05",
        "ALERT_FLAP_WINDOW_SECONDS": "0",
    }
    update = (Path(__file__).parent / "fixtures" / "status-component-update.json").read_bytes()
    with serving(cwd=tmp_path, log=tmp_path / "serve.log", **settings) as server:
        await asyncio.to_thread(wait_ready, server)
        async with httpx.AsyncClient(base_url=server.url) as client:
            answer = await client.post("/webhooks/status/status-token-logs", content=update)
            assert answer.status_code == 200, answer.text
        await sink.wait_for(f"/slack/{slack_secret}", 1)
        await sink.wait_for(f"/hook/{hook_secret}", 1)
    log = server.stderr()
    for secret in (slack_secret, hook_secret, "QUERYSECRET"):
        assert secret not in log, [line for line in log.splitlines() if secret in line]
    [failed] = [line for line in json_lines(log) if "not sent" in line["event"]]
    assert redact_url(hook_url) in failed["event"] and "HTTP 500" in failed["event"]
