"""`taskyard admin backup`: run as a command against the data dir of a real `taskyard api`
process (no engine needed) while another thread keeps submitting tasks."""

import os
import re
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from harness import Server

BODY = {
    "task_type": "execute_code",
    "code": "print(1)",
    "resources": {"cpu": "1", "gpu": "0", "ram": "64MB", "storage": "100MB"},
}


def backup(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "taskyard.cli", "admin", "backup", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )


class Submitter(threading.Thread):
    """Submits tasks one after another until stopped; `stored` lists those answered 201."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.stored: list[str] = []
        self.stop = threading.Event()
        self.errors: list[str] = []

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self.stop.is_set():
                response = client.post("/tasks", json=BODY)
                if response.status_code != 201:
                    self.errors.append(response.text)
                    return
                self.stored.append(response.json()["id"])


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Server]:
    server = Server(tmp_path / "data", verb="api").start(healthy=False)
    yield server
    server.kill()


def copy_of(path: Path) -> tuple[str, set[str], str]:
    """The copy's integrity_check, its task ids and its journal mode."""
    with sqlite3.connect(path) as db:
        check = db.execute("PRAGMA integrity_check").fetchone()[0]
        ids = {row[0] for row in db.execute("SELECT id FROM tasks")}
        mode = db.execute("PRAGMA journal_mode").fetchone()[0]
    db.close()
    return check, ids, mode


def test_backup_while_tasks_are_written(api: Server, tmp_path: Path) -> None:
    submitter = Submitter(api.url)
    submitter.start()
    try:
        deadline = time.monotonic() + 60
        while len(submitter.stored) < 200 and not submitter.errors:  # a busy database first
            assert time.monotonic() < deadline, f"only {len(submitter.stored)} tasks in 60 s"
            submitter.stop.wait(0.01)
        before = list(submitter.stored)
        dest = tmp_path / "copy.db"
        done = backup(dest, "--data-dir", api.data_dir)
        after = len(submitter.stored)
    finally:
        submitter.stop.set()
        submitter.join(30)
    assert not submitter.errors, submitter.errors
    assert done.returncode == 0, done.stderr
    assert after > len(before), "no task was written while the backup ran"

    check, ids, mode = copy_of(dest)
    assert check == "ok"
    assert set(before) <= ids  # every task stored before the backup began is in the copy
    assert mode == "delete"  # one self-contained file, no -wal beside it
    # It says where it wrote, how big the copy is and how many tasks it holds.
    said = re.fullmatch(
        r"backed up (\S+) to (\S+): .*?(\d+) bytes\)?, (\d+) tasks, quick_check ok\n", done.stdout
    )
    assert said, done.stdout
    assert said[1] == str(api.data_dir / "taskyard.db")
    assert said[2] == str(dest)
    assert int(said[3]) == dest.stat().st_size
    assert int(said[4]) == len(ids)
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
    # The service goes on taking tasks.
    assert httpx.post(api.url + "/tasks", json=BODY).status_code == 201


def test_an_existing_file_is_replaced_only_with_force(api: Server, tmp_path: Path) -> None:
    dest = tmp_path / "copy.db"
    dest.write_text("keep me")
    refused = backup(dest, "--data-dir", api.data_dir)
    assert refused.returncode == 1
    assert refused.stderr == f"error: {dest} exists; pass --force to replace it\n"
    assert dest.read_text() == "keep me"

    assert httpx.post(api.url + "/tasks", json=BODY).status_code == 201
    forced = backup(dest, "--data-dir", api.data_dir, "--force")
    assert forced.returncode == 0, forced.stderr
    check, ids, _ = copy_of(dest)
    assert check == "ok" and len(ids) == 1
    assert [p.name for p in tmp_path.iterdir() if ".partial" in p.name] == []


def test_a_directory_gets_a_dated_file(api: Server, tmp_path: Path) -> None:
    folder = tmp_path / "backups"
    folder.mkdir()
    done = backup(folder, "--data-dir", api.data_dir)
    assert done.returncode == 0, done.stderr
    (written,) = folder.iterdir()
    assert re.fullmatch(r"taskyard-\d{8}T\d{6}Z\.db", written.name)
    assert f" to {written}: " in done.stdout


@pytest.mark.parametrize(
    ("where", "says"),
    [
        ("missing-data-dir", "no database at {data}/taskyard.db: is --data-dir"),
        ("missing-folder", "{tmp}/nowhere is not a directory"),
    ],
    ids=["no-database", "no-destination-folder"],
)
def test_refusals_name_the_problem(tmp_path: Path, where: str, says: str) -> None:
    data = tmp_path / "data"
    if where == "missing-folder":
        data.mkdir()
        sqlite3.connect(data / "taskyard.db").close()
    dest = tmp_path / "nowhere" / "copy.db"
    done = backup(dest, "--data-dir", data)
    assert done.returncode == 1
    assert says.format(data=data, tmp=tmp_path) in done.stderr
    assert not dest.exists()


def test_a_postgres_database_is_refused_naming_pg_dump(tmp_path: Path) -> None:
    dest = tmp_path / "copy.db"
    done = subprocess.run(
        [sys.executable, "-m", "taskyard.cli", "admin", "backup", str(dest)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TASKYARD_DATABASE_URL": "postgresql://ty:s3cret@db.example/ty"},
    )
    assert done.returncode == 1
    assert "is PostgreSQL: back it up with pg_dump" in done.stderr
    assert "s3cret" not in done.stderr
    assert not dest.exists()
