"""The real `taskyard` command against real servers on the real Docker engine: a server started
with `--port` is where the CLI goes, and says where it is; tasks are named by `task/<id>` or a
prefix of their id in every verb; phases in any case; doctor against a running service; and
the README's stdin example, run as written."""

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import httpx
import pytest
from cli_support import cli_env, taskyard
from harness import Server, free_port, owned_containers

from taskyard.commands.context import server_address

README = Path(__file__).resolve().parents[2] / "README.md"


@dataclass
class Served:
    url: str
    log: Path
    process: "subprocess.Popen[bytes]"


@pytest.fixture
def served_on_a_port(engine: docker.DockerClient, tmp_path: Path) -> Iterator[Served]:
    """`taskyard serve --port P`, as `deploy/run.sh --port P` runs it: the default data dir (here
    under a private XDG_DATA_HOME), nothing else set."""
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TASKYARD_")},
        "XDG_DATA_HOME": str(tmp_path / "xdg"),
    }
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "taskyard.cli", "serve", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    served = Served(f"http://127.0.0.1:{port}", log_path, process)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, log_path.read_text()[-3000:]
            try:
                if httpx.get(served.url + "/healthz", timeout=2).json()["status"] == "ok":
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        yield served
    finally:
        stop(process)
        owner_file = tmp_path / "xdg" / "taskyard" / "instance-id"
        if owner_file.exists():
            for container in owned_containers(engine, owner_file.read_text().strip()):
                container.remove(force=True)


def stop(process: "subprocess.Popen[bytes]") -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def test_a_server_on_another_port_says_where_it_is_and_the_cli_goes_there(
    served_on_a_port: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, xdg = served_on_a_port.url, tmp_path / "xdg"
    log = served_on_a_port.log.read_text()
    assert f"API: {url} (reference: {url}/docs)" in log
    assert f"dashboard: {url}/" in log
    assert f"data dir: {xdg / 'taskyard'}" in log
    assert f"export TASKYARD_SERVER={url}" in log

    # As the same user, with nothing set: the CLI finds the address the server wrote.
    done = taskyard("submit", "-c", "print('found')", "--wait", env=cli_env(XDG_DATA_HOME=str(xdg)))
    assert (done.returncode, done.stdout) == (0, "found\n"), done.stderr

    # Stopped, the server takes its address back, and the CLI falls back to the default.
    stop(served_on_a_port.process)
    assert not (xdg / "taskyard" / "server-url").exists()
    monkeypatch.delenv("TASKYARD_SERVER", raising=False)
    monkeypatch.delenv("TASKYARD_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(xdg))
    assert server_address(None).source == "the default"


def submitted(server: Server, code: str) -> str:
    created = taskyard("submit", "-c", code, "-o", "name", server=server)
    assert created.returncode == 0, created.stderr
    name = created.stdout.strip()
    assert name.startswith("task/")
    return name


def test_every_verb_takes_task_slash_id_and_a_prefix(cli_server: Server) -> None:
    name = submitted(cli_server, "print('named')")
    task_id = name.removeprefix("task/")

    done = taskyard("watch", "--task", task_id[:10], "-o", "json", server=cli_server)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["to_phase"] == "Succeeded"
    for given in (name, task_id[:8], f"task/{task_id[:12]}"):
        shown = taskyard("get", given, "-o", "name", server=cli_server)
        assert (shown.returncode, shown.stdout) == (0, f"{name}\n"), (given, shown.stderr)
        logs = taskyard("logs", given, server=cli_server)
        assert (logs.returncode, logs.stdout) == (0, "named\n"), (given, logs.stderr)

    sleeper = submitted(cli_server, "import time\ntime.sleep(60)").removeprefix("task/")
    cancelled = taskyard("cancel", sleeper[:8], server=cli_server)
    assert cancelled.stdout == f"task/{sleeper} cancellation requested\n", cancelled.stderr
    waited = taskyard("get", f"task/{sleeper}", "-o", "json", server=cli_server)
    assert json.loads(waited.stdout)["status"]["cancel_requested"] is True

    doomed = submitted(cli_server, "import time\ntime.sleep(60)").removeprefix("task/")
    admin_env = cli_env(cli_server, TASKYARD_DATA_DIR=str(cli_server.data_dir))
    reset = taskyard("admin", "reset", doomed[:9], "--to", "Failed", env=admin_env)
    assert reset.returncode == 0, reset.stderr
    assert reset.stdout.startswith(f"task/{doomed} reset to Failed requested"), reset.stdout

    unknown = taskyard("get", "0000ffff", server=cli_server)
    assert (unknown.returncode, unknown.stderr) == (1, "error: task 0000ffff not found\n")


def test_phases_in_any_case(cli_server: Server) -> None:
    name = submitted(cli_server, "print(1)")
    taskyard("watch", "--task", name.removeprefix("task/"), server=cli_server)

    listed = taskyard("list", "--phase", "succeeded", "--all", "-o", "name", server=cli_server)
    assert listed.returncode == 0, listed.stderr
    assert name in listed.stdout.splitlines()
    answer = httpx.get(f"{cli_server.url}/tasks", params={"phase": "SUCCEEDED", "limit": 500})
    assert answer.status_code == 200
    assert {t["status"]["phase"] for t in answer.json()["items"]} == {"Succeeded"}


def test_doctor_finds_the_running_service_and_changes_nothing(cli_server: Server) -> None:
    before = sorted(path.name for path in cli_server.data_dir.iterdir())
    env = {k: v for k, v in cli_env().items() if k != "DOCKER_HOST"}

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "taskyard.cli",
            "doctor",
            "--data-dir",
            str(cli_server.data_dir),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert f"[ok] server: {cli_server.url} (from {cli_server.data_dir / 'server-url'}" in (
        done.stdout
    )
    assert "answers: ok" in done.stdout
    assert "[ok] engine:" in done.stdout and "[ok] database:" in done.stdout
    assert "HTTP Request" not in done.stdout + done.stderr
    assert sorted(path.name for path in cli_server.data_dir.iterdir()) == before


def test_the_readme_stdin_example_runs_as_written(cli_server: Server, tmp_path: Path) -> None:
    lines = [line for line in README.read_text().splitlines() if "input.txt" in line]
    assert len(lines) == 2, lines  # the file it reads, and the command
    env = cli_env(cli_server, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")

    done = subprocess.run(
        ["sh", "-c", "\n".join(lines)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=90,
        env=env,
    )

    assert (done.returncode, done.stdout) == (0, "hello\n"), done.stderr
