"""Servers for the benchmark as real processes: `visma-hooks serve` and the bare endpoint."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]
VISMA_HOOKS = Path(sys.executable).with_name("visma-hooks")


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str
    log: Path
    workers: int = 1

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def peak_rss_mb(self) -> float:
        """The peak resident set (VmHWM) of one worker, in MB, with the processes it started
        (the SQLite writer's) added to its own.

        With several workers uvicorn's master only supervises; the largest worker counts.
        """
        workers = _children(self.process.pid) if self.workers > 1 else [self.process.pid]
        return max((_tree_hwm_kb(pid) for pid in workers), default=0) / 1024

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the server's processes have used so far, in seconds."""
        pids = [self.process.pid, *_descendants(self.process.pid)]
        return sum(_cpu_ticks(pid) for pid in pids) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def service(database_url: str, *, workers: int, env: dict[str, str]) -> Iterator[Server]:
    """`visma-hooks serve` on a free port, as an operator would start it."""
    port = free_port()
    command = [str(VISMA_HOOKS)] if VISMA_HOOKS.exists() else [sys.executable, "-m", "service.cli"]
    command += ["serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    env = {**env, "DATABASE_URL": database_url}
    with _running(command, env, port, "/healthz", workers=workers) as server:
        yield server


@contextlib.contextmanager
def simulator(*, webhook_secret: str) -> Iterator[Server]:
    """`visma-hooks simulate`: the Visma.net the services read job states from. Its dispatcher
    is pointed at a closed port: the load generator sends the webhooks."""
    port = free_port()
    command = [str(VISMA_HOOKS)] if VISMA_HOOKS.exists() else [sys.executable, "-m", "service.cli"]
    command += ["simulate", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--webhook-url", "http://127.0.0.1:9/webhooks/visma"]
    command += ["--webhook-secret", webhook_secret]
    with _running(command, {}, port, "/_sim/stats") as server:
        yield server


@contextlib.contextmanager
def bare(*, workers: int) -> Iterator[Server]:
    """The bare Starlette endpoint under the same uvicorn settings."""
    port = free_port()
    command = [sys.executable, "-m", "tests.bench.bare", "--port", str(port)]
    command += ["--workers", str(workers)]
    with _running(command, {}, port, "/webhooks/visma", workers=workers) as server:
        yield server


def _inherited() -> dict[str, str]:
    """This process's environment without OTEL_*: a load is traced only when it asks to be."""
    return {k: v for k, v in os.environ.items() if not k.upper().startswith("OTEL_")}


@contextlib.contextmanager
def running(
    command: list[str], env: dict[str, str], port: int, probe: str, *, workers: int = 1
) -> Iterator[Server]:
    """Any other server of the benchmark (the routed-events sink), started as these are."""
    with _running(command, env, port, probe, workers=workers) as server:
        yield server


@contextlib.contextmanager
def _running(
    command: list[str], env: dict[str, str], port: int, probe: str, *, workers: int = 1
) -> Iterator[Server]:
    # The server's output goes to a file: a pipe nobody reads would block it once full.
    with tempfile.TemporaryDirectory(prefix="bench-server-") as tmp:
        log = Path(tmp) / "server.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                command,
                cwd=REPO_ROOT,
                env={**_inherited(), **env, "PYTHONPATH": str(REPO_ROOT)},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        server = Server(process, f"http://127.0.0.1:{port}", log, workers)
        try:
            _wait_until_up(server, probe)
            yield server
        finally:
            _stop(process)


def _wait_until_up(server: Server, probe: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"server exited with {server.process.returncode}: {server.log_tail()}"
            )
        try:
            httpx.get(server.url + probe, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"server at {server.url} did not come up in {timeout} s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _children(pid: int) -> list[int]:
    children: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            text = (task / "children").read_text()
            children += [int(child) for child in text.split()]
    return children


def _descendants(pid: int) -> list[int]:
    children = _children(pid)
    return children + [grandchild for child in children for grandchild in _descendants(child)]


def _tree_hwm_kb(pid: int) -> int:
    return sum(_vm_hwm_kb(p) or 0 for p in [pid, *_descendants(pid)])


def _cpu_ticks(pid: int) -> int:
    with contextlib.suppress(OSError, ValueError, IndexError):
        # Fields 14 and 15 of /proc/<pid>/stat (utime, stime), after the ")" of the name.
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    return 0


def _vm_hwm_kb(pid: int) -> int | None:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return None
