"""`python -m taskyard.healthcheck`, the service image's HEALTHCHECK, against the real app
served on a loopback port: healthy only where /healthz says ok, and it says why not."""

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from live_server import serving
from test_admin_api import add_capacity

from models.database import Database, open_database
from models.settings import Settings


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    db = open_database(database_url)
    yield db
    db.dispose()


def healthcheck(port: int | str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "taskyard.healthcheck"],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "TASKYARD_PORT": str(port)},
    )


def test_healthy_where_healthz_says_ok(tmp_path: Path, database: Database) -> None:
    add_capacity(database)
    with serving(Settings(data_dir=tmp_path / "data"), database) as url:
        done = healthcheck(url.rsplit(":", 1)[1])
    assert done.returncode == 0, done.stdout
    assert done.stdout == f"{url}/healthz: ok\n"


def test_unhealthy_and_why_where_the_controller_is_silent(
    tmp_path: Path, database: Database
) -> None:
    add_capacity(database, heartbeat_age=3600)
    with serving(Settings(data_dir=tmp_path / "data"), database) as url:
        done = healthcheck(url.rsplit(":", 1)[1])
    assert done.returncode == 1
    assert "degraded" in done.stdout and "no reconcile pass for" in done.stdout


def test_unhealthy_where_nothing_answers() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: the connection is refused
        done = healthcheck(port)
    assert done.returncode == 1
    assert f"http://127.0.0.1:{port}/healthz" in done.stdout
