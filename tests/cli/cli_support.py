"""Helpers for the CLI tests (imported by the test modules; fixtures are in conftest.py).

`run_cli` runs a verb in-process against an `httpx.MockTransport` handler; `taskyard` runs the
real command line as a subprocess, as a user would.
"""

import io
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))

from harness import Server, owned_containers

from taskyard.cli import build_parser
from taskyard.commands.context import run

Handler = Callable[[httpx.Request], httpx.Response]


class FakeStdin(io.StringIO):
    def __init__(self, text: str = "", *, tty: bool = False) -> None:
        super().__init__(text)
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


@dataclass
class CliResult:
    code: int
    out: str
    err: str


def run_cli(
    argv: list[str], handler: Handler | None = None, *, stdin: str = "", tty: bool = False
) -> CliResult:
    """Parse `argv` as `taskyard` does and run it against `handler` (a fake server)."""
    args = build_parser().parse_args(argv)
    out, err = io.StringIO(), io.StringIO()
    code = run(
        args,
        transport=httpx.MockTransport(handler) if handler else None,
        out=out,
        err=err,
        stdin=FakeStdin(stdin, tty=tty),
        sleep=lambda _s: None,
    )
    return CliResult(code, out.getvalue(), err.getvalue())


def make_task(
    task_id: str = "t1",
    phase: str = "Pending",
    *,
    reason: str = "Created",
    message: str = "task submitted",
    created_at: str = "2026-11-27T22:00:00Z",
    stdout: str | None = None,
    stderr: str | None = None,
    result: str | None = None,
    cpu: str = "1",
    ram: str = "256MB",
    **status: Any,
) -> dict[str, Any]:
    """A Task object of the contract's shape."""
    return {
        "id": task_id,
        "created_at": created_at,
        "resource_version": 1,
        "spec": {
            "task_type": "execute_code",
            "code": "print(1)",
            "resources": {"cpu": cpu, "gpu": "0", "ram": ram, "storage": "100MB"},
            "timeout_seconds": 30,
            "stdin": None,
        },
        "status": {
            "phase": phase,
            "reason": reason,
            "message": message,
            "result": result,
            "exit_code": None,
            "stdout": stdout,
            "stderr": stderr,
            "stdout_truncated": False,
            "stderr_truncated": False,
            "assigned": {"cpus": [], "gpus": []},
            "attempt": 1,
            "cancel_requested": False,
            "scheduled_at": None,
            "started_at": None,
            "finished_at": None,
            "deadline_at": None,
            **status,
        },
    }


def cli_env(server: Server | None = None, **extra: str) -> dict[str, str]:
    """The environment of a `taskyard` client run: pointed at `server`, no stray tokens."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key
        not in {"TASKYARD_SERVER", "TASKYARD_TOKEN", "TASKYARD_ADMIN_TOKEN", "TASKYARD_DATA_DIR"}
    }
    if server is not None:
        env["TASKYARD_SERVER"] = server.url
    env.update(extra)
    return env


def taskyard(
    *argv: str,
    server: Server | None = None,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
    timeout: float = 90,
) -> subprocess.CompletedProcess[str]:
    """Run the real command line, as a user would: `python -m taskyard.cli ARGV`."""
    return subprocess.run(
        [sys.executable, "-m", "taskyard.cli", *argv],
        env=env or cli_env(server),
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def stop(server: Server, engine: docker.DockerClient) -> None:
    """Stop a server and remove whatever containers it left behind."""
    server.kill(signal.SIGTERM)
    for container in owned_containers(engine, server.owner):
        container.remove(force=True)
