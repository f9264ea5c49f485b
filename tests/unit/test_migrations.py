"""Schema migrations (`models.migrations`), on real SQLite files: the revisions build exactly what
`models.tables` declares, old databases come to head with their rows intact, databases made by
`create_all` before migrations are recognised, and two processes may open a new file at once.

The legacy_schemas/*.sql files are what `SQLModel.metadata.create_all` made at each commit that
changed the schema, taken from `sqlite_master`.
"""

import multiprocessing
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from fastapi.testclient import TestClient
from sqlmodel import SQLModel, col, select

from api.app import create_app
from models import migrations
from models.database import Database, open_database, schema_revision
from models.settings import Settings
from models.tables import ApiToken, Capacity, Task, Transition

LEGACY_SCHEMAS = Path(__file__).parent / "legacy_schemas"
HEAD = "0009"

# Each commit that changed the schema, and the revision that reproduces it.
RELEASED_SCHEMAS = [
    pytest.param("cc288f4", "0001", id="cc288f4-core"),
    pytest.param("2ef0e8b", "0002", id="2ef0e8b-admin-and-metrics"),
    pytest.param("30980c9", "0003", id="30980c9-live-output"),
    pytest.param("77834fe", "0004", id="77834fe-interactive"),
    pytest.param("13c7001", "0005", id="13c7001-tokens-and-tenants"),
]


def url_of(path: Path) -> str:
    return f"sqlite:///{path}"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "taskyard.db"


@pytest.fixture
def opened(db_path: Path) -> Iterator[Database]:
    database = open_database(url_of(db_path))
    yield database
    database.dispose()


def schema_differences(database: Database) -> list[Any]:
    """What autogenerate would write to go from this database to the models; [] when equal."""
    with database.reader.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "compare_server_default": True}
        )
        return list(compare_metadata(context, SQLModel.metadata))


def shapes_of(url: str) -> migrations.Shape:
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        shapes = migrations.table_shapes(connection)
    engine.dispose()
    return shapes


def create_legacy(path: Path, commit: str) -> None:
    """A database as taskyard at `commit` left it: `create_all`, no alembic_version."""
    with sqlite3.connect(path) as connection:
        connection.executescript((LEGACY_SCHEMAS / f"{commit}.sql").read_text())
    connection.close()


def create_at_revision(path: Path, revision: str) -> None:
    engine = sa.create_engine(url_of(path))
    with engine.begin() as connection:
        command.upgrade(migrations.alembic_config(connection), revision)
    engine.dispose()


def raw_rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    connection = sqlite3.connect(path)
    try:
        return connection.execute(sql).fetchall()
    finally:
        connection.close()


# --- the revisions build what the models declare ------------------------------------------


def test_a_new_database_is_migrated_to_exactly_what_the_models_declare(opened: Database) -> None:
    assert schema_revision(opened) == HEAD == migrations.head_revision()
    assert schema_differences(opened) == []


def test_the_migrated_schema_equals_create_all_column_for_column(
    opened: Database, tmp_path: Path
) -> None:
    # Stricter than autogenerate: defaults, primary keys and index names all as create_all does.
    reference = url_of(tmp_path / "create_all.db")
    engine = sa.create_engine(reference)
    SQLModel.metadata.create_all(engine)
    engine.dispose()
    assert shapes_of(str(opened.writer.url)) == shapes_of(reference)


def test_downgrading_to_the_first_revision_and_back_ends_at_the_models(db_path: Path) -> None:
    create_at_revision(db_path, "head")
    engine = sa.create_engine(url_of(db_path))
    with engine.begin() as connection:
        command.downgrade(migrations.alembic_config(connection), "0001")
    engine.dispose()
    assert set(shapes_of(url_of(db_path))) == {"tasks", "transitions", "capacity"}

    database = open_database(url_of(db_path))
    assert schema_revision(database) == HEAD
    assert schema_differences(database) == []
    database.dispose()


def test_every_revision_reproduces_the_schema_of_its_release(tmp_path: Path) -> None:
    by_revision = dict(migrations.revision_shapes())
    assert list(by_revision) == [
        "0009",
        "0008",
        "0007",
        "0006",
        "0005",
        "0004",
        "0003",
        "0002",
        "0001",
    ]
    for param in RELEASED_SCHEMAS:
        commit, revision = param.values
        create_legacy(tmp_path / f"{commit}.db", str(commit))
        assert shapes_of(url_of(tmp_path / f"{commit}.db")) == by_revision[str(revision)], commit


# --- upgrading a database with rows in it -------------------------------------------------

T0 = "2025-03-01 10:00:00.000000"
T1 = "2025-03-01 10:00:01.500000"
T2 = "2025-03-01 10:00:03.250000"

# Tasks as the first release wrote them, one per phase it had rows in.
OLD_TASKS = [
    # id, phase, reason, message, attempt, exit_code, stdout, assigned_cpus, started, finished
    (
        "t-pending",
        "Pending",
        "Unschedulable",
        "waiting: Insufficient cpu: requested 4, free 2",
        0,
        None,
        None,
        "[]",
        None,
        None,
    ),
    ("t-running", "Running", "Started", "running", 1, None, None, "[2, 3]", T1, None),
    ("t-done", "Succeeded", "Completed", "exited 0", 1, 0, "Hello, World!\n", "[]", T1, T2),
    ("t-failed", "Failed", "NonZeroExit", "exited 3", 1, 3, "", "[]", T1, T2),
]


def insert_first_release_rows(path: Path) -> None:
    connection = sqlite3.connect(path)
    with connection:
        for pk, (
            task_id,
            phase,
            reason,
            message,
            attempt,
            exit_code,
            stdout,
            cpus,
            started,
            finished,
        ) in enumerate(OLD_TASKS, start=1):
            connection.execute(
                "INSERT INTO tasks (pk, id, created_at, resource_version, task_type, code, cpu,"
                " gpu, ram, ram_bytes, storage, storage_bytes, timeout_seconds, stdin,"
                " cancel_requested_at, phase, reason, message, result, exit_code, stdout, stderr,"
                " stdout_truncated, stderr_truncated, assigned_cpus, assigned_gpus, attempt,"
                " scheduled_at, started_at, finished_at, deadline_at) VALUES (?, ?, ?, ?,"
                " 'execute_code', ?, 2, 0, '512MB', 512000000, '1GB', 1000000000, 30, NULL, NULL,"
                " ?, ?, ?, NULL, ?, ?, NULL, 0, 0, ?, '[]', ?, ?, ?, ?, NULL)",
                (
                    pk,
                    task_id,
                    T0,
                    pk + 1,
                    f"print('{task_id}')",
                    phase,
                    reason,
                    message,
                    exit_code,
                    stdout,
                    cpus,
                    attempt,
                    started,
                    started,
                    finished,
                ),
            )
            connection.execute(
                "INSERT INTO transitions (task_id, from_phase, to_phase, reason, message, at,"
                " resource_version) VALUES (?, NULL, 'Pending', 'Created', 'created', ?, 1)",
                (task_id, T0),
            )
            if phase != "Pending":
                connection.execute(
                    "INSERT INTO transitions (task_id, from_phase, to_phase, reason, message,"
                    " at, resource_version) VALUES (?, 'Pending', ?, ?, ?, ?, 2)",
                    (task_id, phase, reason, message, T1),
                )
        connection.execute(
            "INSERT INTO capacity (node, cpus_total, cpu_ids, ram_total, ram_allocatable,"
            " storage_total, storage_allocatable, gpu_ids, gpu_names, gpu_sharing,"
            " allocated_cpus, allocated_gpus, allocated_ram, allocated_storage, runtime_ok,"
            " runtime_message, heartbeat_at) VALUES ('local', 4, '[0, 1, 2, 3]', 8000000000,"
            " 7700000000, 50000000000, 49000000000, '[]', '[]', 1, '[2, 3]', '[]', 512000000,"
            " 1000000000, 1, 'engine ok', ?)",
            (T2,),
        )
    connection.close()


@pytest.mark.parametrize(
    "make_old",
    [
        pytest.param(lambda path: create_at_revision(path, "0001"), id="alembic-revision-0001"),
        pytest.param(lambda path: create_legacy(path, "cc288f4"), id="create_all-at-cc288f4"),
    ],
)
def test_a_first_release_database_is_upgraded_with_its_rows_intact(
    make_old: Any, db_path: Path, tmp_path: Path
) -> None:
    make_old(db_path)
    insert_first_release_rows(db_path)
    tasks_before = raw_rows(db_path, "SELECT * FROM tasks ORDER BY pk")
    transitions_before = raw_rows(db_path, "SELECT * FROM transitions ORDER BY seq")

    database = open_database(url_of(db_path))
    try:
        assert schema_revision(database) == HEAD
        assert schema_differences(database) == []

        # Every old column keeps its value; the added ones come after them, at their defaults.
        tasks_after = raw_rows(db_path, "SELECT * FROM tasks ORDER BY pk")
        assert [row[: len(tasks_before[0])] for row in tasks_after] == tasks_before
        assert raw_rows(db_path, "SELECT * FROM transitions ORDER BY seq") == transitions_before
        assert raw_rows(
            db_path,
            "SELECT DISTINCT interactive, owner, reset_requested_to, reset_requested_at,"
            " stuck_reason, stuck_since FROM tasks",
        ) == [(0, None, None, None, None, None)]
        # The counts the first release kept come back as the strings a request gives.
        assert raw_rows(db_path, "SELECT DISTINCT cpu_text, gpu_text FROM tasks") == [("2", "0")]

        with database.read() as session:
            running = session.exec(select(Task).where(Task.phase == "Running")).one()
            assert (running.id, running.assigned_cpus, running.interactive, running.owner) == (
                "t-running",
                [2, 3],
                False,
                None,
            )
            done = session.exec(select(Task).where(Task.id == "t-done")).one()
            assert (done.exit_code, done.stdout, done.finished_at is not None) == (
                0,
                "Hello, World!\n",
                True,
            )
            capacity = session.exec(select(Capacity)).one()
            assert (capacity.stats, capacity.allocated_cpus) == ({}, [2, 3])
            assert len(session.exec(select(Transition)).all()) == 7

        # The app itself works on it: reads the old tasks, writes new ones and tokens.
        with TestClient(
            create_app(Settings(data_dir=tmp_path), database), base_url="http://127.0.0.1"
        ) as client:
            got = client.get("/tasks/t-done")
            assert got.status_code == 200, got.text
            assert got.json()["status"]["phase"] == "Succeeded"
            assert got.json()["spec"]["interactive"] is False
            assert got.json()["spec"]["resources"] == {
                "cpu": "2",
                "gpu": "0",
                "ram": "512MB",
                "storage": "1GB",
            }
            # An old task's spec, sent back, is a new task with the same spec.
            created = client.post("/tasks", json=got.json()["spec"])
            assert created.status_code == 201, created.text
            assert created.json()["spec"] == got.json()["spec"]
        with database.write() as session:
            session.add(ApiToken(id="tok-1", name="alice", token_hash="h" * 64))
            session.commit()
        with database.read() as session:
            ids = session.exec(select(Task.id).order_by(col(Task.pk))).all()
            assert ids[:4] == ["t-pending", "t-running", "t-done", "t-failed"]
            assert len(ids) == 5
    finally:
        database.dispose()


# --- the phase is one of the seven (0009) --------------------------------------------------

PHASES = ("Pending", "Scheduled", "Running", "Succeeded", "Failed", "TimedOut", "Cancelled")


def insert_task(path: Path, task_id: str, phase: str) -> None:
    """A task row as of revision 0008 (and head), written past the models."""
    connection = sqlite3.connect(path)
    try:
        with connection:
            connection.execute(
                "INSERT INTO tasks (id, created_at, resource_version, task_type, code, cpu,"
                " cpu_text, gpu, gpu_text, ram, ram_bytes, storage, storage_bytes,"
                " timeout_seconds, phase, reason, message, stdout_truncated, stderr_truncated,"
                " assigned_cpus, assigned_gpus, attempt, interactive, runtime, files, args, env,"
                " collect, collected_files, files_truncated) VALUES (?, ?, 1, 'execute_code',"
                " 'print(1)', 1, '1', 0, '0', '64MB', 67108864, '1GB', 1073741824, 30, ?,"
                " 'Created', '', 0, 0, '[]', '[]', 1, 0, 'python', '[]', '[]', '{}', '[]', '[]',"
                " 0)",
                (task_id, T0, phase),
            )
    finally:
        connection.close()


def test_the_database_refuses_a_phase_outside_the_seven(opened: Database, db_path: Path) -> None:
    insert_task(db_path, "t-ok", "Pending")
    with pytest.raises(sqlite3.IntegrityError, match="ck_tasks_phase"):
        insert_task(db_path, "t-bad", "Paused")
    connection = sqlite3.connect(db_path)
    try:
        with pytest.raises(sqlite3.IntegrityError, match="ck_tasks_phase"):
            connection.execute("UPDATE tasks SET phase = 'pending' WHERE id = 't-ok'")
    finally:
        connection.close()
    assert raw_rows(db_path, "SELECT id, phase FROM tasks") == [("t-ok", "Pending")]


def test_a_0008_database_with_a_task_in_each_phase_is_upgraded_with_its_rows(
    db_path: Path,
) -> None:
    create_at_revision(db_path, "0008")
    for phase in PHASES:
        insert_task(db_path, f"t-{phase}", phase)
    rows_before = raw_rows(db_path, "SELECT * FROM tasks ORDER BY pk")

    database = open_database(url_of(db_path))
    try:
        assert schema_revision(database) == HEAD
        assert schema_differences(database) == []
        assert raw_rows(db_path, "SELECT * FROM tasks ORDER BY pk") == rows_before
        with pytest.raises(sqlite3.IntegrityError, match="ck_tasks_phase"):
            insert_task(db_path, "t-bad", "Paused")
    finally:
        database.dispose()


def test_a_0008_database_holding_another_phase_is_refused_by_name_and_left_alone(
    db_path: Path,
) -> None:
    create_at_revision(db_path, "0008")
    insert_task(db_path, "t-ok", "Running")
    insert_task(db_path, "t-odd", "Paused")
    sql_before = raw_rows(db_path, "SELECT name, sql FROM sqlite_master ORDER BY name")

    with pytest.raises(migrations.SchemaError, match=r"t-odd \('Paused'\)"):
        open_database(url_of(db_path))
    assert raw_rows(db_path, "SELECT version_num FROM alembic_version") == [("0008",)]
    assert raw_rows(db_path, "SELECT name, sql FROM sqlite_master ORDER BY name") == sql_before


# --- databases made before migrations -----------------------------------------------------


@pytest.mark.parametrize(("commit", "revision"), RELEASED_SCHEMAS)
def test_a_database_from_before_migrations_is_recognised_and_upgraded(
    commit: str, revision: str, db_path: Path
) -> None:
    create_legacy(db_path, commit)
    with sqlite3.connect(db_path) as connection:
        connection.execute(
            "INSERT INTO transitions (task_id, to_phase, reason, message, at, resource_version)"
            " VALUES ('t-1', 'Pending', 'Created', 'created', ?, 1)",
            (T0,),
        )
    connection.close()

    database = open_database(url_of(db_path))
    assert schema_revision(database) == HEAD
    assert schema_differences(database) == []
    assert raw_rows(db_path, "SELECT task_id, to_phase FROM transitions") == [("t-1", "Pending")]
    database.dispose()


def test_todays_create_all_database_is_stamped_at_head_without_copying_tables(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine = sa.create_engine(url_of(db_path))
    SQLModel.metadata.create_all(engine)
    engine.dispose()
    # A table that was copied would come back at another root page.
    sql_before = raw_rows(db_path, "SELECT name, rootpage, sql FROM sqlite_master ORDER BY name")

    with caplog.at_level("INFO", logger="models.migrations"):
        database = open_database(url_of(db_path))
    assert schema_revision(database) == HEAD
    assert f"the tables match {HEAD}; stamping it" in caplog.text
    assert "upgrading" not in caplog.text
    sql_after = raw_rows(db_path, "SELECT name, rootpage, sql FROM sqlite_master ORDER BY name")
    assert [row for row in sql_after if "alembic_version" not in row[0]] == sql_before
    database.dispose()


def test_a_database_that_matches_no_revision_is_refused_and_left_alone(db_path: Path) -> None:
    create_legacy(db_path, "cc288f4")
    with sqlite3.connect(db_path) as connection:
        connection.execute("ALTER TABLE tasks DROP COLUMN deadline_at")
        connection.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY)")
    connection.close()
    sql_before = raw_rows(db_path, "SELECT name, sql FROM sqlite_master ORDER BY name")

    with pytest.raises(migrations.SchemaError) as refused:
        open_database(url_of(db_path))
    message = str(refused.value)
    assert "match no revision" in message
    assert "column deadline_at DATETIME NULL" in message
    assert "table notes is not taskyard's" in message
    assert raw_rows(db_path, "SELECT name, sql FROM sqlite_master ORDER BY name") == sql_before


def test_a_database_from_a_newer_taskyard_is_refused_by_name(db_path: Path) -> None:
    database = open_database(url_of(db_path))
    database.dispose()
    with sqlite3.connect(db_path) as connection:
        connection.execute("UPDATE alembic_version SET version_num = '0042'")
    connection.close()

    with pytest.raises(migrations.SchemaError, match=r"revision '0042'.*newer taskyard"):
        open_database(url_of(db_path))


# --- two openers at once ------------------------------------------------------------------


def open_when_released(url: str, start: Any, results: Any) -> None:
    start.wait()
    try:
        database = open_database(url)
        results.put(schema_revision(database))
        database.dispose()
    except Exception as exc:  # the parent asserts on what came back
        results.put(f"{type(exc).__name__}: {exc}")


def test_two_processes_opening_a_new_file_at_once_both_end_at_head(db_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    start, results = context.Event(), context.Queue()
    processes = [
        context.Process(target=open_when_released, args=(url_of(db_path), start, results))
        for _ in range(2)
    ]
    for process in processes:
        process.start()
    start.set()
    outcomes = sorted(results.get(timeout=120) for _ in processes)
    for process in processes:
        process.join(timeout=60)
    assert outcomes == [HEAD, HEAD]
    assert raw_rows(db_path, "SELECT version_num FROM alembic_version") == [(HEAD,)]
    database = open_database(url_of(db_path))
    assert schema_differences(database) == []
    database.dispose()


@pytest.mark.parametrize("legacy", [False, True], ids=["new-file", "legacy-cc288f4"])
def test_threads_opening_one_file_at_once_migrate_it_once(
    legacy: bool, db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    if legacy:
        create_legacy(db_path, "cc288f4")
    start = threading.Barrier(4)
    outcomes: list[str] = []

    class Results:
        def put(self, value: str) -> None:
            outcomes.append(value)

    threads = [
        threading.Thread(target=open_when_released, args=(url_of(db_path), start, Results()))
        for _ in range(4)
    ]
    with caplog.at_level("INFO", logger="models.migrations"):
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    assert outcomes == [HEAD] * 4
    migrated = [m for m in caplog.messages if "creating revision" in m or "upgrading from" in m]
    assert len(migrated) == 1
    assert raw_rows(db_path, "SELECT version_num FROM alembic_version") == [(HEAD,)]
