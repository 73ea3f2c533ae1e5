"""What the CLI prints, read as a person at an 80-column terminal (or a pipe) reads it: short ids
that `job` and `submit --resend` take back, tables that never break an id, JSON for programs,
and help that says every flag's meaning, default and choices."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from service import cli, store
from service.simulator import SimulatorState
from tests.cli_process import run_cli, simulator_thread, visma_settings
from tests.factories import insert_job

TWINS = ("3d854858-48b2-4286-9a7b-0c1d2e3f4a5b", "3d854858-0c41-4f7e-8a2d-5b6c7d8e9f00")
LONER = "7f0c2a19-5e8d-4b3a-9c1f-2d3e4f5a6b7c"
STATES = "submitted, accepted, succeeded, failed, expired, rejected"


async def _add_jobs(database_url: str) -> None:
    engine = store.create_engine(database_url)
    sessions = store.create_sessionmaker(engine)
    at = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
    try:
        await insert_job(
            sessions,
            id=TWINS[0],
            state="succeeded",
            method="DELETE",
            path="/v1/customer/b64(Oi8_I1tdQCYqKzs)/contact/1234567890/attachment",
            http_status=204,
            visma_job_id="5b0d0c7e-9a3f-4e21-8b6d-1f2e3d4c5b6a",
            submitted_at=at,
        )
        await insert_job(sessions, id=TWINS[1], state="failed", submitted_at=at)
        await insert_job(
            sessions,
            id=LONER,
            state="rejected",
            path="/v1/salesorder",
            request_body=b'{"orderNumber": "SO-1"}',
            submitted_at=at,
        )
    finally:
        await engine.dispose()


@pytest.fixture(name="with_jobs")
def fixture_with_jobs(clean_database: str) -> str:
    asyncio.run(_add_jobs(clean_database))
    return clean_database


def test_jobs_fit_80_columns_with_whole_short_ids(with_jobs: str, tmp_path: Path) -> None:
    ran = run_cli("jobs", cwd=tmp_path, DATABASE_URL=with_jobs)
    assert ran.code == 0, ran.err
    lines = ran.out.splitlines()
    assert all(len(line) <= 80 for line in lines), ran.out
    header = next(line for line in lines if line.startswith("id "))
    assert header.split() == ["id", "state", "method", "path", "http", "submitted", "(UTC)"]
    rows = [line.split() for line in lines if re.match(r"[0-9a-f]{8} ", line)]
    assert sorted(row[0] for row in rows) == sorted(i[:8] for i in (*TWINS, LONER))
    deleted = next(row for row in rows if row[2] == "DELETE")
    assert deleted[:2] == ["3d854858", "succeeded"] and deleted[4] == "204"
    assert deleted[3].startswith("/v1/customer/") and deleted[3].endswith("…")
    assert "2026-03-02 08:00" in ran.out
    # One row per job: an id, or a long path, never spills onto a line of its own.
    assert len([line for line in lines if line.strip()]) == 2 + 1 + 3


def test_jobs_json_is_whole(with_jobs: str, tmp_path: Path) -> None:
    ran = run_cli(
        "jobs", "--state", "succeeded,failed", "--json", cwd=tmp_path, DATABASE_URL=with_jobs
    )
    assert ran.code == 0, ran.err
    data = json.loads(ran.out)
    assert sorted(item["id"] for item in data["items"]) == sorted(TWINS)
    assert data["totalCount"] == 2


def test_job_takes_the_short_id_and_an_ambiguous_one_lists_the_matches(
    with_jobs: str, tmp_path: Path
) -> None:
    ran = run_cli("job", LONER[:8], cwd=tmp_path, DATABASE_URL=with_jobs)
    assert ran.code == 0, ran.err
    assert ran.out.splitlines()[0] == f"job {LONER}  rejected"
    assert all(len(line) <= 80 for line in ran.out.splitlines())

    ran = run_cli("job", "3d854858", cwd=tmp_path, DATABASE_URL=with_jobs)
    assert ran.code == 2  # the command line named no one job: a usage mistake
    assert ran.err_lines == [
        f"error: '3d854858' is the start of 2 job ids: {min(TWINS)}, {max(TWINS)}; "
        "give more of the id"
    ]

    ran = run_cli("job", TWINS[0][:10], "--json", cwd=tmp_path, DATABASE_URL=with_jobs)
    assert ran.code == 0, ran.err
    assert json.loads(ran.out)["id"] == TWINS[0]

    ran = run_cli("job", "0000", cwd=tmp_path, DATABASE_URL=with_jobs)
    assert ran.code == 1 and ran.err_lines == ["error: no job with id '0000'"]


@pytest.fixture(name="simulator")
def fixture_simulator() -> Iterator[tuple[SimulatorState, str]]:
    with simulator_thread() as simulator:
        yield simulator


def test_submit_resend_takes_the_short_id(
    with_jobs: str, simulator: tuple[SimulatorState, str], tmp_path: Path
) -> None:
    state, url = simulator
    ran = run_cli(
        "submit",
        "--resend",
        LONER[:8],
        "--json",
        cwd=tmp_path,
        DATABASE_URL=with_jobs,
        **visma_settings(url),
    )
    assert ran.code == 0, ran.err
    new = json.loads(ran.out)
    assert new["state"] == "accepted"
    assert new["events"][0]["detail"]["resentFrom"] == LONER
    assert state.jobs[new["vismaJobId"]].request_body == b'{"orderNumber": "SO-1"}'


def test_help_lists_every_command_and_fits_80_columns(tmp_path: Path) -> None:
    ran = run_cli("--help", cwd=tmp_path)
    assert ran.code == 0
    assert all(len(line) <= 80 for line in ran.out.splitlines())
    listed = re.findall(r"^    (\w+) ", ran.out, flags=re.MULTILINE)
    assert listed == [
        "serve",
        "migrate",
        "submit",
        "jobs",
        "job",
        "issues",
        "issue",
        "resend",
        "poll",
        "replay",
        "purge",
        "demo",
        "simulate",
    ]

    ran = run_cli("jobs", "--help", cwd=tmp_path)
    text = " ".join(ran.out.split())
    assert STATES in text
    assert "jobs per page, at most 500 (default: 50)" in text

    ran = run_cli("--version", cwd=tmp_path)
    assert ran.code == 0 and ran.out == f"visma-hooks {cli._version()}\n"
    assert ran.out != "visma-hooks unknown\n"


def test_every_flag_of_every_command_has_help() -> None:
    parser = cli._parser()
    commands = next(
        action for action in parser._actions if isinstance(action, argparse._SubParsersAction)
    )
    assert set(commands.choices) == {c.dest for c in commands._choices_actions}  # all listed
    for name, sub in commands.choices.items():
        for action in sub._actions:
            assert action.help, f"`visma-hooks {name}` {action.option_strings or action.dest}"
