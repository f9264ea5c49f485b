"""The store itself, on SQLite and on a real PostgreSQL: what one SQLite file in one process gave
for free must hold across API processes on Postgres too. Seqs commit in increasing order (a
watcher reading `seq > last` misses nothing), a watcher on one API process hears a task
submitted on another at once and resumes on a third by its Last-Event-ID, two API processes
cannot both take a user's last place, and every revision of the schema runs on Postgres.
"""

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from alembic import command
from fastapi import HTTPException
from fastapi.testclient import TestClient
from live_server import serving
from scratch_postgres import Postgres
from sqlalchemy import text
from sqlmodel import col, select
from test_watch_api import TASK, Watch

from api.app import create_app
from api.errors import storage_problem
from api.submissions import SubmissionWriter, task_values
from models import migrations
from models.database import Database, open_database
from models.phases import Phase, Reason
from models.postgres import postgres_engine, sqlalchemy_url
from models.quantities import GIB
from models.settings import Settings
from models.tables import Capacity, Task, Transition


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    db = open_database(database_url)
    yield db
    db.dispose()


@pytest.fixture
def other(database_url: str) -> Iterator[Database]:
    """The same database opened again, as a second API process opens it."""
    db = open_database(database_url)
    yield db
    db.dispose()


@pytest.fixture
def empty_postgres(postgres: Postgres) -> Iterator[str]:
    name = postgres.server.create_database()
    yield postgres.server.url(name)
    postgres.discard(name)


def transition(task_id: str) -> Transition:
    return Transition(
        task_id=task_id,
        from_phase=None,
        to_phase=Phase.PENDING,
        reason=Reason.CREATED,
        message="task submitted",
        resource_version=1,
    )


# --- opening ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u:p@db:5432/ty", "postgresql+psycopg://u:p@db:5432/ty"),
        ("postgres://u@/ty?host=/run/pg", "postgresql+psycopg://u@/ty?host=/run/pg"),
        ("postgresql+psycopg://u@db/ty", "postgresql+psycopg://u@db/ty"),
        ("sqlite:////var/lib/taskyard/taskyard.db", "sqlite:////var/lib/taskyard/taskyard.db"),
    ],
    ids=["postgresql", "postgres", "explicit-driver", "sqlite"],
)
def test_a_users_url_names_psycopg_for_postgres(given: str, expected: str) -> None:
    assert sqlalchemy_url(given) == expected


def test_a_postgres_url_opens_a_database_at_head(empty_postgres: str) -> None:
    database = open_database(empty_postgres.replace("postgresql://", "postgres://", 1))
    try:
        assert database.is_postgres
        assert "psycopg" in database.display_url
        with database.read() as session:
            assert session.exec(select(Task)).all() == []
    finally:
        database.dispose()


def test_every_revision_runs_on_postgres_and_keeps_the_rows_it_finds(empty_postgres: str) -> None:
    # Engines without open_database's own migration to head: each revision runs by itself.
    database = Database(
        writer=postgres_engine(empty_postgres, writer=True),
        reader=postgres_engine(empty_postgres, writer=False),
    )
    revisions = [script.revision for script in migrations._scripts().walk_revisions()][::-1]
    assert revisions[0] == "0001"
    try:
        for revision in revisions:
            with database.writer.begin() as connection, migrations._alembic_lock:
                command.upgrade(migrations.alembic_config(connection), revision)
                if revision == "0001":  # a task as the first release stored it, 8 GiB of RAM
                    connection.execute(text(FIRST_RELEASE_TASK))
                    connection.execute(text(FIRST_RELEASE_CAPACITY))
        with database.read() as session:
            task = session.exec(select(Task)).one()
            capacity = session.exec(select(Capacity)).one()
        assert (task.ram_bytes, task.stdin, task.cpu_text, task.gpu_text) == (
            8 * GIB,
            "a\x00b",
            "2",
            "0",
        )
        assert (task.runtime, task.files, task.env, task.files_truncated, task.interactive) == (
            "python",
            [],
            {},
            False,
            False,
        )
        assert (capacity.ram_total, capacity.stats, capacity.runtimes) == (16 * GIB, {}, {})
        with database.writer.begin() as connection, migrations._alembic_lock:
            command.downgrade(migrations.alembic_config(connection), "base")
            remaining = connection.execute(
                text("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
            ).scalar_one()
        assert remaining == 1  # alembic_version alone
    finally:
        database.dispose()


FIRST_RELEASE_TASK = """
INSERT INTO tasks (id, created_at, resource_version, task_type, code, cpu, gpu, ram, ram_bytes,
    storage, storage_bytes, timeout_seconds, stdin, phase, reason, message, stdout_truncated,
    stderr_truncated, assigned_cpus, assigned_gpus, attempt)
VALUES ('t1', now(), 1, 'execute_code', 'print(1)', 2, 0, '8GB', 8589934592, '1GB', 1073741824,
    60, decode('610062', 'hex'), 'Pending', 'Created', '', false, false, '[]', '[]', 1)
"""
FIRST_RELEASE_CAPACITY = """
INSERT INTO capacity (node, cpus_total, cpu_ids, ram_total, ram_allocatable, storage_total,
    storage_allocatable, gpu_ids, gpu_names, gpu_sharing, allocated_cpus, allocated_gpus,
    allocated_ram, allocated_storage, runtime_ok, runtime_message)
VALUES ('local', 2, '[0, 1]', 17179869184, 8589934592, 1, 1, '[]', '[]', 1, '[]', '[]', 0, 0,
    true, '')
"""


# --- seqs commit in order -----------------------------------------------------------------------


def _waiting_for_the_writer_lock(database: Database) -> bool:
    with database.read() as session:
        waiting = session.execute(
            text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
        ).scalar_one()
    return bool(waiting)


def test_a_second_writer_of_transitions_commits_after_the_first(postgres: Postgres) -> None:
    """A takes seq N and has not committed; B, which would take N + 1, waits for A's commit. A
    watcher that read N + 1 before N committed would otherwise never see N. (Postgres only:
    SQLite's writers are one at a time by its file lock.)"""
    name, url = postgres.fresh_url()
    database = open_database(url)
    try:
        _second_writer_waits(database)
    finally:
        database.dispose()
        postgres.discard(name)


def _second_writer_waits(database: Database) -> None:
    first = database.write()
    first.add(transition("a"))
    first.flush()
    committed: list[str] = []

    def second_writer() -> None:
        with database.write() as session:
            session.add(transition("b"))
            session.commit()
        committed.append("b")

    writer = threading.Thread(target=second_writer)
    writer.start()
    deadline = time.monotonic() + 10
    while not _waiting_for_the_writer_lock(database) and not committed:
        assert time.monotonic() < deadline, "the second writer neither waited nor committed"
        time.sleep(0.01)
    with database.read() as session:  # what a watcher reads now: nothing yet
        assert session.exec(select(Transition)).all() == []
    assert committed == []
    first.commit()
    committed.append("a")
    first.close()
    writer.join(10)

    assert committed == ["a", "b"]
    with database.read() as session:
        rows = session.exec(select(Transition).order_by(col(Transition.seq))).all()
    assert [row.task_id for row in rows] == ["a", "b"]


def test_a_watcher_reading_after_its_last_seq_misses_no_commit_of_two_busy_writers(
    database: Database, other: Database
) -> None:
    """Two processes' writers commit transitions as fast as they can while a reader follows
    them by `seq > last`, as the watch feed does: it must read every one."""
    per_writer = 150
    seen: list[int] = []
    done = threading.Event()

    def write(db: Database, name: str) -> None:
        for number in range(per_writer):
            with db.write() as session:
                session.add(transition(f"{name}-{number}"))
                session.flush()
                session.add(transition(f"{name}-{number}-again"))
                session.commit()

    def follow() -> None:
        last = 0
        while True:
            finished = done.is_set()
            with database.read() as session:
                rows = session.exec(
                    select(Transition.seq).where(col(Transition.seq) > last).order_by("seq")
                ).all()
            for seq in rows:
                seen.append(seq or 0)
                last = seq or 0
            if finished:
                return

    reader = threading.Thread(target=follow)
    writers = [
        threading.Thread(target=write, args=(db, name))
        for db, name in ((database, "one"), (other, "two"))
    ]
    reader.start()
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join(120)
    done.set()
    reader.join(30)

    with database.read() as session:
        stored = session.exec(select(Transition.seq).order_by("seq")).all()
    assert len(stored) == 4 * per_writer
    assert seen == stored


# --- watching across API processes ---------------------------------------------------------------


def test_a_watcher_hears_a_task_submitted_on_another_api_process_and_resumes_on_a_third(
    tmp_path: Path, database: Database, other: Database, database_url: str
) -> None:
    # On Postgres the feed polls once an hour: only the other process's NOTIFY can wake it.
    poll = 3600.0 if database.is_postgres else 0.01
    settings = Settings(data_dir=tmp_path, watch_poll_seconds=poll, watch_heartbeat_seconds=60)
    with (
        serving(settings, database) as watched_url,
        serving(settings, other) as submitted_url,
        httpx.Client(base_url=watched_url, timeout=5) as watched,
        httpx.Client(base_url=submitted_url, timeout=5) as submitting,
    ):
        watch = Watch(watched, {}, {})
        try:
            assert watch.frame() is not None  # the opening comment: subscribed
            first = submitting.post("/tasks", json=TASK).json()["id"]
            [event] = watch.next_events(1, within=5)
            assert (event["task_id"], event["to_phase"]) == (first, "Pending")
        finally:
            watch.close()
        second = submitting.post("/tasks", json=TASK).json()["id"]

    # A third process, started after both are gone, resumes after the last event seen.
    third = open_database(database_url)
    try:
        with (
            serving(settings, third) as url,
            httpx.Client(base_url=url, timeout=5) as client,
        ):
            resumed = Watch(client, {}, {"Last-Event-ID": str(event["seq"])})
            try:
                assert resumed.frame() is not None
                [again] = resumed.next_events(1, within=5)
            finally:
                resumed.close()
    finally:
        third.dispose()
    assert (again["task_id"], again["seq"] > event["seq"]) == (second, True)


def test_a_commit_on_another_process_moves_the_commit_watch(
    database: Database, other: Database
) -> None:
    heard = threading.Event()
    commits = database.commit_watch(heard.set)
    try:
        deadline = time.monotonic() + 10
        before = commits.version()
        with other.write() as session:
            session.add(transition("elsewhere"))
            session.commit()
        while commits.version() == before:
            assert time.monotonic() < deadline, "the commit was not noticed"
            time.sleep(0.01)
        if database.is_postgres:
            assert heard.wait(5), "the listener did not call back"
    finally:
        commits.close()


# --- quotas across API processes ---------------------------------------------------------------


def test_two_api_processes_cannot_both_take_a_users_last_place(
    tmp_path: Path, database: Database, other: Database
) -> None:
    settings = Settings(data_dir=tmp_path, user_max_active_tasks=1)
    writers = [SubmissionWriter(database, settings), SubmissionWriter(other, settings)]
    users = [f"user-{number}" for number in range(20)]
    outcomes: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(2)

    def submit(writer: SubmissionWriter) -> None:
        async def each() -> None:
            for user in users:
                values = task_values(
                    task_type="execute_code",
                    code="print(1)",
                    cpu=1,
                    cpu_text="1",
                    gpu=0,
                    gpu_text="0",
                    ram="64MB",
                    ram_bytes=64 << 20,
                    storage="100MB",
                    storage_bytes=100 << 20,
                    timeout_seconds=60,
                    owner=user,
                )
                try:
                    await writer.insert(values)
                    status = 201
                except HTTPException as exc:
                    status = exc.status_code
                with lock:
                    outcomes.append(status)

        start.wait()
        asyncio.run(each())

    threads = [threading.Thread(target=submit, args=(writer,)) for writer in writers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for writer in writers:
        writer.close()

    assert sorted(outcomes) == [201] * len(users) + [429] * len(users)
    with database.read() as session:
        owners = session.exec(select(Task.owner)).all()
    assert sorted(owners) == sorted(users)  # each user exactly once


# --- storage failures --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "words", "retry_after"),
    [
        (psycopg.errors.DiskFull, "disk is full", 30),
        (psycopg.errors.LockNotAvailable, "locked by another writer", 2),
        (psycopg.errors.DeadlockDetected, "lock conflict", 1),
        (psycopg.errors.TooManyConnections, "out of memory or connections", 5),
        (psycopg.errors.AdminShutdown, "shutting down", 5),
        (psycopg.errors.CannotConnectNow, "starting up", 5),
        (psycopg.errors.ConnectionFailure, "cannot be reached", 5),
        (psycopg.errors.ReadOnlySqlTransaction, "read-only", 30),
        (psycopg.errors.IoError, "I/O error", 10),
        (psycopg.OperationalError, "cannot be reached", 5),
    ],
    ids=lambda value: getattr(value, "__name__", None),
)
def test_a_postgres_storage_failure_is_named(
    error: type[psycopg.Error], words: str, retry_after: int
) -> None:
    problem = storage_problem(error("from the server"))
    assert problem is not None
    assert words in problem.message and problem.retry_after == retry_after


@pytest.mark.parametrize(
    "error", [psycopg.errors.UniqueViolation, psycopg.errors.SyntaxError], ids=lambda e: e.__name__
)
def test_a_postgres_error_that_is_a_bug_is_not_a_storage_failure(
    error: type[psycopg.Error],
) -> None:
    assert storage_problem(error("a bug")) is None


def test_the_api_answers_503_while_the_postgres_database_is_gone(
    tmp_path: Path, postgres: Postgres
) -> None:
    name, url = postgres.fresh_url()
    database = open_database(url)
    try:
        with TestClient(
            create_app(Settings(data_dir=tmp_path), database), base_url="http://127.0.0.1"
        ) as client:
            assert client.get("/tasks").status_code == 200
            postgres.server.drop_database(name)  # its connections are cut, it cannot be reached

            response = client.get("/tasks")

        assert response.status_code == 503, response.text
        assert "storage unavailable" in response.json()["detail"]
        assert int(response.headers["retry-after"]) > 0
    finally:
        database.dispose()
