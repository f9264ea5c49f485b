"""The controller service against the fake engine while the database is locked by another
process for longer than the busy timeout: passes fail, are logged, and the next pass after the
lock is gone does the work. The service never stops.
"""

import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

import controller.observe
from api.app import create_app
from controller.capacity import HostCapacity
from controller.fake_runtime import FakeRuntime
from controller.loop import Reconciler
from controller.service import ControllerService
from models.database import Database, open_database
from models.quantities import GIB
from models.settings import Settings

HOST = HostCapacity(
    cpus_total=2,
    cpu_ids=(0, 1),
    ram_total=8 * GIB,
    ram_allocatable=4 * GIB,
    storage_total=20 * GIB,
    storage_allocatable=10 * GIB,
    gpus=(),
    gpu_sharing=1,
)
# Another process holds the store's write lock until it reads a line: SQLite's, or the writer
# lock every Postgres write transaction takes first.
_HOLD_LOCK = """
import sys
url = sys.argv[1]
if url.startswith("sqlite:///"):
    import sqlite3
    connection = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
    connection.execute("BEGIN EXCLUSIVE")
else:
    import psycopg
    from models.postgres import WRITER_LOCK
    connection = psycopg.connect(url, autocommit=True)
    connection.execute(f"SELECT pg_advisory_lock({WRITER_LOCK})")
print("locked", flush=True)
sys.stdin.readline()
connection.close()
"""
# What a write that waited out the short timeout fails with.
_LOCKED = {"sqlite": "database is locked", "postgresql": "canceling statement due to lock timeout"}


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    database = open_database(database_url)
    for engine in (database.writer, database.reader):

        @event.listens_for(engine, "connect")
        def _short(dbapi_connection: Any, _record: Any) -> None:
            if database.is_postgres:
                dbapi_connection.execute("SET lock_timeout = 200")
                dbapi_connection.commit()
            else:
                dbapi_connection.execute("PRAGMA busy_timeout=200")

        engine.dispose()
    yield database
    database.dispose()


def _met_the_lock(database: Database, records: list[logging.LogRecord]) -> bool:
    """Whether a failed pass was logged with the lock as its cause."""
    return any(
        record.getMessage().startswith("reconcile pass failed")
        and record.exc_info is not None
        and _LOCKED[database.writer.dialect.name] in str(record.exc_info[1])
        for record in records
    )


def _phase(client: TestClient, task_id: str) -> str:
    phase: str = client.get(f"/tasks/{task_id}").json()["status"]["phase"]
    return phase


def test_passes_that_meet_a_locked_database_are_retried_until_it_is_free(
    database: Database,
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(controller.observe, "discover_capacity", lambda *_a, **_k: HOST)
    settings = Settings(data_dir=tmp_path, admin_token="admin")
    fake = FakeRuntime()
    reconciler = Reconciler(
        settings, database, fake, owner="test-owner", gpu_probe=lambda: ([], "no gpus")
    )
    service = ControllerService(reconciler, database, interval=0.2)
    holder: subprocess.Popen[str] | None = None
    try:
        with TestClient(create_app(settings, database), base_url="http://127.0.0.1") as client:
            task_id = client.post(
                "/tasks",
                json={
                    "task_type": "execute_code",
                    "code": "print(1)",
                    "resources": {"cpu": "1", "gpu": "0", "ram": "64MB", "storage": "100MB"},
                },
            ).json()["id"]
            holder = subprocess.Popen(
                [sys.executable, "-c", _HOLD_LOCK, database_url],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert holder.stdin is not None and holder.stdout is not None
            assert holder.stdout.readline() == "locked\n"
            with caplog.at_level(logging.ERROR, logger="taskyard.controller"):
                service.start()
                deadline = time.monotonic() + 30
                while not _met_the_lock(database, caplog.records):
                    assert time.monotonic() < deadline, "no pass met the lock"
                    time.sleep(0.05)
            assert _phase(client, task_id) == "Pending"
            assert fake.runs == []

            holder.stdin.write("\n")
            holder.stdin.flush()
            assert holder.wait(10) == 0
            deadline = time.monotonic() + 30
            while _phase(client, task_id) != "Running":
                assert time.monotonic() < deadline, "the task was not started after the lock"
                time.sleep(0.05)
    finally:
        service.stop()
        if holder is not None and holder.poll() is None:
            holder.kill()
            holder.wait()

    assert len(fake.runs) == 1
