"""`taskyard doctor` as a person runs it (a subprocess), where the engine cannot be reached and
no service runs: each cause said once, `DOCKER_HOST` named when it is the cause, the missing
server a warning, and nothing created or changed on disk. (With an engine and a server, in
test_cli_service_e2e.py.)"""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from harness import free_port

from models.database import open_database

DEAD_SOCKET = "unix:///nonexistent/taskyard-test/docker.sock"


def doctor(*argv: str, docker_host: str = DEAD_SOCKET) -> "subprocess.CompletedProcess[str]":
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("TASKYARD_") and key != "DOCKER_HOST"
    }
    env["DOCKER_HOST"] = docker_host
    return subprocess.run(
        [sys.executable, "-m", "taskyard.cli", "doctor", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def snapshot(root: Path) -> dict[str, str]:
    """Every file under `root` with a hash of its bytes."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def test_a_dead_docker_host_is_named_once_and_a_missing_server_is_a_warning(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "never-created"
    server = f"http://127.0.0.1:{free_port()}"

    done = doctor("--data-dir", str(data_dir), "--server", server)

    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stdout.splitlines()
    engine = [line for line in lines if line.startswith("[FAIL] engine:")]
    assert len(engine) == 1
    assert engine[0].startswith(f"[FAIL] engine: DOCKER_HOST={DEAD_SOCKET}: cannot reach")
    assert done.stdout.count("cannot reach the Docker engine") == 1
    fix = lines[lines.index(engine[0]) + 1]
    assert fix.strip().startswith("fix: point DOCKER_HOST at a running engine, or unset it")
    assert "dockerd" not in done.stdout  # not the fix when DOCKER_HOST is what is wrong
    warning = next(line for line in lines if line.startswith("[warn] server:"))
    assert f"nothing answers at {server} (from --server)" in warning
    assert "--server URL or TASKYARD_SERVER=URL" in done.stdout
    assert "[ok] database:" in done.stdout and "does not exist yet" in done.stdout
    assert not data_dir.exists()
    assert list(tmp_path.iterdir()) == []


def test_an_existing_database_is_read_and_left_as_it_was(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    open_database(f"sqlite:///{data_dir / 'taskyard.db'}").dispose()
    before = snapshot(tmp_path)
    assert list(before) == ["data/taskyard.db"]  # no write-ahead log once the last user left

    done = doctor("--data-dir", str(data_dir), "--server", f"http://127.0.0.1:{free_port()}")

    assert "[ok] database:" in done.stdout and "schema at revision" in done.stdout, done.stdout
    assert snapshot(tmp_path) == before
