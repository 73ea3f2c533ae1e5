"""`visma-hooks` as a user runs it: a process of its own, started in a folder of the test's,
with only the settings the test gives it (none from the developer's environment or `.env`)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvicorn

from service.settings import Settings
from service.simulator import SimulatorConfig, SimulatorState, create_simulator_app
from tests.servers import bind_loopback, url_of

SCRIPT = Path(sys.executable).with_name("visma-hooks")
CLI = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "service.cli"]
_SETTINGS = {name.upper() for name in Settings.model_fields}


@dataclass
class Ran:
    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]


def cli_env(**settings: str) -> dict[str, str]:
    """The environment of a CLI process: this one's, less every setting, at 80 columns."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name.upper() not in _SETTINGS
        and name not in ("FORCE_COLOR", "COLUMNS")
        # No traces to the developer's collector by surprise: only a test turns them on.
        and not name.upper().startswith("OTEL_")
    }
    env["COLUMNS"] = "80"
    env.update(settings)
    return env


def run_cli(*args: str, cwd: Path, timeout: float = 120, **settings: str) -> Ran:
    """Run `visma-hooks ARGS` in `cwd` and wait for it to end."""
    done = subprocess.run(
        [*CLI, *args],
        cwd=cwd,
        env=cli_env(**settings),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Ran(done.returncode, done.stdout, done.stderr)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Serving:
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def serving(
    *args: str, cwd: Path, log: Path, port: int | None = None, **settings: str
) -> Iterator[Serving]:
    """`visma-hooks serve ARGS` on `port` (else a free loopback port), stopped (SIGINT) when
    the block ends."""
    port = port or free_port()
    with log.open("wb") as err:  # a file: a pipe nobody reads would block the server once full
        process = subprocess.Popen(
            [*CLI, "serve", "--host", "127.0.0.1", "--port", str(port), *args],
            cwd=cwd,
            env=cli_env(**settings),
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        yield Serving(process, f"http://127.0.0.1:{port}", log)
    finally:
        if process.poll() is None:
            process.send_signal(2)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_ready(server: Serving, *, timeout: float = 60) -> None:
    """Until `/readyz` answers 200; fails at once if the server exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = server.process.poll()
        assert code is None, f"serve exited with {code}: {server.stderr()}"
        try:
            if httpx.get(f"{server.url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{server.url} not ready after {timeout} s: {server.stderr()}")


@contextmanager
def simulator_thread() -> Iterator[tuple[SimulatorState, str]]:
    """The Visma simulator served in a thread of the test's process (the CLI has its own), and
    its URL."""
    sock = bind_loopback()
    app = create_simulator_app(SimulatorConfig(webhook_url=None))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the simulator did not start"
        time.sleep(0.01)
    try:
        yield app.state.simulator, url_of(sock)
    finally:
        server.should_exit = True
        thread.join(timeout=5)


def visma_settings(url: str) -> dict[str, str]:
    """The settings that point the service at the simulator at `url`."""
    return {
        "VISMA_API_URL": url,
        "VISMA_TOKEN_URL": f"{url}/connect/token",
        "VISMA_CLIENT_ID": "sim-client",
        "VISMA_CLIENT_SECRET": "sim-secret",
        "VISMA_TENANT_ID": "sim-tenant",
    }
