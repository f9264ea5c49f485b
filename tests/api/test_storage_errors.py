"""Storage failures answer 503 with Retry-After and a JSON `detail` that says what is wrong,
never a 500; nothing already stored is damaged; the service recovers by itself once the
storage does.

The data disk really fills: the database lives on a 4 MiB tmpfs mounted for the test (this
needs root, as CI has), and a file fills what is left of it. The database is really locked:
another process holds `BEGIN EXCLUSIVE` on it for longer than the busy timeout, which the test
shortens to a fraction of a second on its own connections.
"""

import concurrent.futures
import errno
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from live_server import serving
from sqlalchemy import event, text
from sqlalchemy.exc import OperationalError
from sqlmodel import select

from api.app import create_app
from api.errors import storage_problem
from models.database import Database, open_database
from models.settings import Settings
from models.tables import Task

BUSY_TIMEOUT_MS = 300
SMALL = {"cpu": "1", "gpu": "0", "ram": "64MB", "storage": "100MB"}


def body(code: str = "print(1)") -> dict[str, Any]:
    return {"task_type": "execute_code", "code": code, "resources": dict(SMALL)}


def short_busy_timeout(database: Database, milliseconds: int = BUSY_TIMEOUT_MS) -> None:
    """Make every new connection of `database` give up on a lock after `milliseconds`."""
    for engine in (database.writer, database.reader):

        @event.listens_for(engine, "connect")
        def _short(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.execute(f"PRAGMA busy_timeout={milliseconds}")

        engine.dispose()  # connections opened before now keep the long timeout


def stored_ids(database: Database) -> set[str]:
    with database.read() as session:
        return set(session.exec(select(Task.id)))


def integrity(database: Database) -> str:
    with database.read() as session:
        return str(session.execute(text("PRAGMA integrity_check")).scalar_one())


def assert_storage_503(response: Any, *words: str) -> None:
    assert response.status_code == 503, response.text[:300]
    assert int(response.headers["retry-after"]) > 0
    detail = response.json()["detail"]
    assert detail.startswith("storage unavailable: "), detail
    for word in words:
        assert word in detail, detail


# --- the data disk is full ----------------------------------------------------------------


@dataclass
class SmallDisk:
    path: Path

    def fill(self) -> Path:
        """Write a file until the filesystem has no byte left; return it."""
        filler = self.path / "filler"
        with open(filler, "wb", buffering=0) as handle:
            for size in (1 << 16, 1 << 12, 1 << 9, 1):
                try:
                    while True:
                        handle.write(b"\0" * size)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
        return filler


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(
            "this test fills a real filesystem: it mounts a 4 MiB tmpfs, which needs root "
            f"(CI runs as root). mount said: {result.stderr.strip() or result.returncode}"
        )
    try:
        yield SmallDisk(mount_point)
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


@pytest.fixture
def disk_database(small_disk: SmallDisk) -> Iterator[Database]:
    database = open_database(f"sqlite:///{small_disk.path / 'taskyard.db'}")
    yield database
    database.dispose()


def test_full_disk_answers_503_keeps_what_is_stored_and_recovers(
    small_disk: SmallDisk,
    disk_database: Database,
    tmp_path: Path,
) -> None:
    settings = Settings(data_dir=tmp_path, admin_token="admin")
    with TestClient(
        create_app(settings, disk_database),
        raise_server_exceptions=False,
        base_url="http://127.0.0.1",
    ) as client:
        before = [client.post("/tasks", json=body(f"print({n})")).json() for n in range(3)]
        filler = small_disk.fill()

        # Half a MiB of code needs pages the database file and its WAL do not have yet.
        refused = client.post("/tasks", json=body("#" * (512 * 1024)))
        cancel = client.delete(f"/tasks/{before[0]['id']}")

        assert_storage_503(refused, "disk is full")
        assert_storage_503(cancel, "disk is full")
        for task in before:
            fetched = client.get(f"/tasks/{task['id']}")
            assert fetched.status_code == 200
            assert fetched.json()["spec"]["code"] == task["spec"]["code"]
            assert fetched.json()["status"]["cancel_requested"] is False
        assert client.get("/tasks").json()["items"][-1]["id"] == before[0]["id"]

        filler.unlink()
        accepted = client.post("/tasks", json=body("#" * (512 * 1024)))
        cancelled = client.delete(f"/tasks/{before[0]['id']}")

    assert accepted.status_code == 201, accepted.text[:300]
    assert cancelled.status_code == 202
    assert stored_ids(disk_database) == {task["id"] for task in before} | {accepted.json()["id"]}
    assert integrity(disk_database) == "ok"


def test_every_submission_waiting_on_a_full_disk_gets_its_own_503(
    small_disk: SmallDisk,
    disk_database: Database,
    tmp_path: Path,
) -> None:
    # Concurrent submissions are committed in groups by one writer thread: each waiting
    # request must hear of the failure, and the writer must go on afterwards.
    settings = Settings(data_dir=tmp_path, admin_token="admin")
    with serving(settings, disk_database) as url, httpx.Client(base_url=url, timeout=60) as http:
        assert http.post("/tasks", json=body()).status_code == 201
        filler = small_disk.fill()

        # Each is bigger than what the database file and its WAL have room for.
        big = ["#" * (256 * 1024) + str(n) for n in range(8)]
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda code: http.post("/tasks", json=body(code)), big))
        for answer in answers:
            assert_storage_503(answer, "disk is full")

        filler.unlink()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda n: http.post("/tasks", json=body(str(n))), range(8)))
        assert [answer.status_code for answer in answers] == [201] * 8

    assert len(stored_ids(disk_database)) == 9
    assert integrity(disk_database) == "ok"


# --- the database is locked by another process --------------------------------------------

_HOLD_LOCK = """
import sqlite3, sys
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
connection.execute("ROLLBACK")
"""


@pytest.fixture
def locked_database(tmp_path: Path) -> Iterator[tuple[Database, Any]]:
    """A database, and a function that locks it from another process until called again."""
    path = tmp_path / "taskyard.db"
    database = open_database(f"sqlite:///{path}")
    short_busy_timeout(database)
    holders: list[subprocess.Popen[str]] = []

    def lock() -> Any:
        holder = subprocess.Popen(
            [sys.executable, "-c", _HOLD_LOCK, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        holders.append(holder)
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"

        def release() -> None:
            assert holder.stdin is not None
            holder.stdin.write("\n")
            holder.stdin.flush()
            assert holder.wait(10) == 0

        return release

    yield database, lock
    for holder in holders:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    database.dispose()


def test_database_locked_longer_than_the_busy_timeout_answers_503_then_recovers(
    locked_database: tuple[Database, Any],
    tmp_path: Path,
) -> None:
    database, lock = locked_database
    settings = Settings(data_dir=tmp_path, admin_token="admin")
    with TestClient(
        create_app(settings, database), raise_server_exceptions=False, base_url="http://127.0.0.1"
    ) as client:
        existing = client.post("/tasks", json=body()).json()
        release = lock()

        refused = client.post("/tasks", json=body("print('refused')"))
        cancel = client.delete(f"/tasks/{existing['id']}")
        reset = client.post(
            f"/admin/tasks/{existing['id']}/reset",
            json={"to": "Failed"},
            headers={"Authorization": "Bearer admin"},
        )
        token = client.post(
            "/admin/tokens", json={"name": "alice"}, headers={"Authorization": "Bearer admin"}
        )
        read = client.get(f"/tasks/{existing['id']}")

        release()
        accepted = client.post("/tasks", json=body("print('accepted')"))
        cancelled = client.delete(f"/tasks/{existing['id']}")

    for answer in (refused, cancel, reset, token):
        assert_storage_503(answer, "locked by another writer")
    assert read.status_code == 200  # readers do not wait for writers (WAL)
    assert accepted.status_code == 201
    assert cancelled.status_code == 202
    assert stored_ids(database) == {existing["id"], accepted.json()["id"]}
    assert integrity(database) == "ok"


def test_a_lock_shorter_than_the_busy_timeout_only_delays_the_answer(
    locked_database: tuple[Database, Any],
    tmp_path: Path,
) -> None:
    database, lock = locked_database
    short_busy_timeout(database, 20_000)
    settings = Settings(data_dir=tmp_path, admin_token="admin")
    with TestClient(create_app(settings, database), base_url="http://127.0.0.1") as client:
        release = lock()
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pending = pool.submit(client.post, "/tasks", json=body())
            # However long the wait here, the lock is let go long before the 20 s timeout.
            assert not pending.done()
            release()
            answer = pending.result(timeout=60)

    assert answer.status_code == 201, answer.text


def test_storage_errors_of_other_kinds_are_recognised() -> None:
    def wrapped(message: str) -> OperationalError:
        return OperationalError("INSERT …", {}, sqlite3.OperationalError(message))

    assert storage_problem(wrapped("disk I/O error")) is not None
    assert storage_problem(wrapped("unable to open database file")) is not None
    assert storage_problem(wrapped("attempt to write a readonly database")) is not None
    assert storage_problem(wrapped("no such table: tasks")) is None  # a bug, not the disk
