"""Configuration mistakes, as a new user makes them: one line on stderr, exit status 2, no
traceback (unless asked for), and no database made by a command that only uses one."""

from __future__ import annotations

import socket
import sqlite3
import uuid
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from service.store import is_sqlite
from tests.cli_process import run_cli

MISTAKES = [
    pytest.param({"DATABASE_URL": "mysql://x"}, ["jobs"], "names a 'mysql' database", id="mysql"),
    pytest.param({"DATABASE_URL": "garbage"}, ["job", "3d854858"], "not a database URL", id="junk"),
    pytest.param({"DATABASE_URL": "mysql://x"}, ["serve"], "'mysql'", id="serve-mysql"),
    pytest.param({"DATABASE_URL": "garbage"}, ["migrate"], "'garbage'", id="migrate-junk"),
    pytest.param(
        {"POLL_AFTER_SECONDS": "-1"}, ["jobs"], "POLL_AFTER_SECONDS: Input should be", id="bound"
    ),
    pytest.param(
        {"ALERT_WEBHOOK_URLS": "https://hooks.example/a"},
        ["serve"],
        "ALERT_SIGNING_SECRET is empty",
        id="unsigned-alerts",
    ),
    pytest.param({"LOG_LEVEL": "loud"}, ["migrate"], "LOG_LEVEL", id="log-level"),
    pytest.param(
        {},
        ["submit", "--path", "/v1/customer", "--body-file", "order.json"],
        "--body-file: cannot read 'order.json': No such file",
        id="body-file",
    ),
    pytest.param({}, ["jobs", "--state", "done"], "'done' is not a job state", id="state"),
    pytest.param({}, ["jobs", "--tag", "orderRef"], "wants KEY=VALUE", id="tag"),
    pytest.param({}, ["serve", "--port", "99999"], "'99999' is not a port", id="port"),
    pytest.param({}, ["serve", "--port", "0"], "'0' is not a port", id="port-0"),
    pytest.param({}, ["serve", "--workers", "0"], "'0' is not a whole number", id="workers"),
    pytest.param({}, ["submit", "--wait", "--timeout", "0"], "seconds above 0", id="wait-timeout"),
]


@pytest.mark.parametrize(("settings", "args", "says"), MISTAKES)
def test_a_configuration_mistake_is_one_line_and_status_2(
    tmp_path: Path, settings: dict[str, str], args: list[str], says: str
) -> None:
    ran = run_cli(*args, cwd=tmp_path, **settings)
    assert ran.code == 2, ran.err
    assert len(ran.err_lines) == 1, ran.err
    assert ran.err_lines[0].startswith("error: ")
    assert says in ran.err_lines[0]
    assert "Traceback" not in ran.err
    assert list(tmp_path.iterdir()) == []  # not even a database folder


def test_serve_on_a_port_in_use_is_one_line_and_status_2(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ran = run_cli("serve", "--port", str(port), cwd=tmp_path, timeout=60)
    assert ran.code == 2, ran.err
    assert ran.err_lines == [f"error: cannot listen on 127.0.0.1:{port}: Address already in use"]
    assert list(tmp_path.iterdir()) == []  # refused before anything was made


@pytest.mark.parametrize(
    ("settings", "args", "says"),
    [
        pytest.param(
            {"VISMA_API_URL": "http://127.0.0.1:9", "VISMA_CLIENT_ID": "c"},
            ["submit", "--path", "/v1/customer"],
            "cannot submit jobs: set",
            id="no-visma-settings",
        ),
        pytest.param(
            {},
            ["submit", "--path", "v1/customer"],
            "path must start with /v1/ or /v2/",
            id="relative-path",
        ),
    ],
)
def test_a_submission_the_settings_or_flags_cannot_make_is_status_2(
    tmp_path: Path, settings: dict[str, str], args: list[str], says: str
) -> None:
    assert run_cli("migrate", cwd=tmp_path).code == 0  # a database, so only the flags are wrong
    ran = run_cli(*args, cwd=tmp_path, **settings)
    assert ran.code == 2, ran.err
    assert len(ran.err_lines) == 1 and says in ran.err_lines[0], ran.err


def test_a_secret_in_a_bad_url_is_not_echoed(tmp_path: Path) -> None:
    ran = run_cli("jobs", cwd=tmp_path, DATABASE_URL="postgresql://u:s3cret@host:notaport/db")
    assert ran.code == 2 and len(ran.err_lines) == 1
    assert "s3cret" not in ran.err


def test_debug_or_log_level_debug_adds_the_traceback(tmp_path: Path) -> None:
    for args, settings in [
        (["--debug", "jobs"], {"DATABASE_URL": "mysql://x"}),
        (["jobs", "--debug"], {"DATABASE_URL": "mysql://x"}),
        # With the settings themselves invalid, LOG_LEVEL is still heard.
        (["jobs"], {"POLL_AFTER_SECONDS": "-1", "LOG_LEVEL": "DEBUG"}),
    ]:
        ran = run_cli(*args, cwd=tmp_path, **settings)
        assert ran.code == 2, (args, ran.err)
        assert "Traceback (most recent call last)" in ran.err
        assert ran.err_lines[-1].startswith("error: ")


@pytest.mark.parametrize(
    "args",
    [
        ["jobs"],
        ["job", "3d854858"],
        ["submit", "--path", "/v1/customer", "--body", "{}"],
        ["poll"],
    ],
)
def test_commands_that_use_the_database_never_create_one(tmp_path: Path, args: list[str]) -> None:
    ran = run_cli(*args, cwd=tmp_path)  # the default: sqlite:///./data/visma-hooks.db
    assert ran.code == 2, ran.err
    path = tmp_path / "data" / "visma-hooks.db"
    assert ran.err_lines == [
        f"error: no database at {path} (DATABASE_URL sqlite:///./data/visma-hooks.db): "
        "create it with `visma-hooks migrate`, or set DATABASE_URL to the one you mean"
    ]
    assert ran.out == ""
    assert not (tmp_path / "data").exists()


def test_a_database_with_no_schema_says_to_migrate(tmp_path: Path) -> None:
    sqlite3.connect(tmp_path / "empty.db").close()
    ran = run_cli("jobs", cwd=tmp_path, DATABASE_URL="sqlite:///empty.db")
    assert ran.code == 2
    assert ran.err_lines == ["error: the database has no schema yet: run `visma-hooks migrate`"]


def test_a_file_that_is_no_database_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "notes.db").write_text("not a database, just notes\n" * 200)
    ran = run_cli("jobs", cwd=tmp_path, DATABASE_URL="sqlite:///notes.db")
    assert ran.code == 2 and len(ran.err_lines) == 1, ran.err
    assert ran.err_lines[0].startswith("error: cannot open the database sqlite:///notes.db: ")
    assert "file is not a database" in ran.err_lines[0]


def test_a_postgresql_database_that_does_not_exist_is_one_line(
    tmp_path: Path, database_url: str
) -> None:
    if is_sqlite(database_url):
        pytest.skip("a PostgreSQL server is needed to ask it for a database it does not have")
    name = f"visma_hooks_missing_{uuid.uuid4().hex[:8]}"
    missing = make_url(database_url).set(database=name).render_as_string(hide_password=False)
    for args in (["jobs"], ["migrate"], ["serve"], ["serve", "--migrate"]):
        ran = run_cli(*args, cwd=tmp_path, DATABASE_URL=missing)
        assert ran.code == 2, (args, ran.err)
        assert len(ran.err_lines) == 1, (args, ran.err)
        assert f'has no database "{name}": create it (createdb {name})' in ran.err_lines[0]


def test_an_unreachable_postgresql_is_one_line(tmp_path: Path) -> None:
    ran = run_cli("jobs", cwd=tmp_path, DATABASE_URL="postgresql://u:pw@127.0.0.1:9/db")
    assert ran.code == 2 and len(ran.err_lines) == 1, ran.err
    assert ran.err_lines[0].startswith(
        "error: cannot open the database postgresql://u:***@127.0.0.1:9/db: "
    )
    assert "pw" not in ran.err
