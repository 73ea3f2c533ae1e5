"""The package as it is installed away from the repository, and the container that ships it.

The install is the one the Dockerfile makes: uv, from uv.lock, not editable (a wheel built from
a copy of the sources, its migrations inside), run from a folder with nothing of the
repository in it. Docker itself cannot run here: the Dockerfile is read with Docker's own
parser instead.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import dockerfile
import pytest

from service.settings import Settings
from service.store.migrations import head_revision
from tests.cli_process import cli_env

ROOT = Path(__file__).parent.parent
UV = Path(sys.executable).with_name("uv")


def copy_sources(to: Path) -> None:
    """The repository's files as a fresh clone would have them (with uncommitted edits)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (to / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, to / name)


def test_a_non_editable_install_migrates_from_any_folder(tmp_path: Path) -> None:
    if not UV.exists():
        pytest.fail(f"uv is not beside {sys.executable}: `make install` puts it there")
    source, venv, elsewhere = tmp_path / "source", tmp_path / "venv", tmp_path / "elsewhere"
    copy_sources(source)
    env = {
        **{k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"},
        "UV_PROJECT_ENVIRONMENT": str(venv),
        "UV_PYTHON_DOWNLOADS": "never",
    }
    sync = subprocess.run(
        [str(UV), "sync", "--locked", "--no-editable", "--python", sys.executable],
        cwd=source,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert sync.returncode == 0, sync.stderr
    shutil.rmtree(source)  # nothing of the sources is left to lean on
    elsewhere.mkdir()

    def run(*args: str, **settings: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            args,
            cwd=elsewhere,
            env=cli_env(**settings),
            capture_output=True,
            text=True,
            timeout=120,
        )

    where = run(str(venv / "bin" / "python"), "-c", "import service; print(service.__file__)")
    assert where.stdout.startswith(str(venv / "lib")), where
    migrated = run(str(venv / "bin" / "visma-hooks"), "migrate", DATABASE_URL="sqlite:///hooks.db")
    assert migrated.returncode == 0, migrated.stderr
    assert migrated.stdout == (
        f"created the database {elsewhere / 'hooks.db'} at revision {head_revision()}\n"
    )
    shown = run(str(venv / "bin" / "visma-hooks"), "--version")
    assert shown.stdout == f"visma-hooks {version('visma-hooks')}\n"


def _instructions() -> list[dockerfile.Command]:
    return list(dockerfile.parse_file(str(ROOT / "Dockerfile")))


def test_the_image_installs_the_locked_dependencies_before_the_code() -> None:
    commands = _instructions()
    steps = [(c.cmd, " ".join(c.value)) for c in commands]
    deps = steps.index(("RUN", "uv sync --locked --no-install-project --no-editable"))
    code = steps.index(("COPY", ". ."))
    project = steps.index(("RUN", "uv sync --locked --no-editable"))
    assert deps < code < project
    # Only the lock and pyproject reach the dependency layer: a code change keeps it.
    mounts = [flag for flag in commands[deps].flags if "type=bind" in flag]
    assert sorted(re.search(r"source=([^,]+)", m).group(1) for m in mounts) == [  # type: ignore[union-attr]
        "pyproject.toml",
        "uv.lock",
    ]
    makefile = (ROOT / "Makefile").read_text()
    pinned = re.search(r"^UV_VERSION := (\S+)$", makefile, flags=re.MULTILINE)
    assert pinned and ("RUN", f"pip install --no-cache-dir uv=={pinned.group(1)}") in steps


def test_the_image_runs_as_a_user_with_a_healthcheck_that_waits_for_the_start() -> None:
    commands = _instructions()
    final = commands[max(i for i, c in enumerate(commands) if c.cmd == "FROM") :]
    user = [c.value[0] for c in final if c.cmd == "USER"]
    assert user and user[-1] not in ("root", "0")
    health = next(c for c in final if c.cmd == "HEALTHCHECK")
    assert any(flag.startswith("--start-period=") for flag in health.flags)
    cmd = next(c for c in final if c.cmd == "CMD")
    assert cmd.value[:2] == ("visma-hooks", "serve") and "--migrate" in cmd.value
    # The image holds the installed venv, never the sources or a developer's files.
    assert [c.value for c in final if c.cmd == "COPY"] == [("/venv", "/venv")]
    ignored = (ROOT / ".dockerignore").read_text().split()
    for name in (".git", ".venv", ".env", "data/", "*.db"):
        assert name in ignored


def test_the_readme_says_how_long_a_dropped_webhook_waits() -> None:
    readme = (ROOT / "README.md").read_text()
    rehearsal = readme.split("## Rehearsing with the simulator", 1)[1].split("\n## ", 1)[0]
    default = Settings.model_fields["POLL_AFTER_SECONDS"].default
    assert "POLL_AFTER_SECONDS" in rehearsal
    assert f"{default:g} s" in rehearsal
    assert "POLL_AFTER_SECONDS=5" in rehearsal  # and how to shorten it
