"""Batches (POST /batches, GET and DELETE /batches/{id}, GET /tasks?batch=, GET /watch?batch=)
through the real app over a real SQLite file per test, with no controller running: the tests
move tasks the way the controller does (`controller.status.move`).
"""

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from live_server import serving
from sqlalchemy import event
from sqlmodel import col, select

from api.app import create_app
from controller.status import move
from models.clock import utcnow
from models.database import Database, open_database
from models.phases import Phase, Reason
from models.quantities import GIB
from models.settings import Settings
from models.tables import Capacity, Task, Transition

ADMIN = "admin-secret"
SMALL = {"cpu": "1", "gpu": "0", "ram": "64MB", "storage": "100MB"}


def body(code: str = "print(1)", **changes: Any) -> dict[str, Any]:
    return {"task_type": "execute_code", "code": code, "resources": dict(SMALL), **changes}


def bodies(count: int) -> list[dict[str, Any]]:
    return [body(f"print({n})") for n in range(count)]


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    db = open_database(database_url)
    yield db
    db.dispose()


def make_client(tmp_path: Path, database: Database, **settings: Any) -> TestClient:
    app = create_app(Settings(data_dir=tmp_path, admin_token=ADMIN, **settings), database)
    return TestClient(app, base_url="http://127.0.0.1")


@pytest.fixture
def client(tmp_path: Path, database: Database) -> Iterator[TestClient]:
    with make_client(tmp_path, database) as test_client:
        yield test_client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def new_user(client: TestClient, name: str) -> str:
    response = client.post("/admin/tokens", json={"name": name}, headers=bearer(ADMIN))
    assert response.status_code == 201, response.text
    token: str = response.json()["token"]
    return token


def submit_batch(
    client: TestClient, tasks: list[dict[str, Any]], headers: dict[str, str] | None = None
) -> dict[str, Any]:
    response = client.post("/batches", json={"tasks": tasks}, headers=headers)
    assert response.status_code == 201, response.text
    answer: dict[str, Any] = response.json()
    return answer


def stored(database: Database) -> list[str]:
    with database.read() as session:
        return list(session.exec(select(Task.id).order_by(col(Task.pk))))


def locs(response: httpx.Response) -> list[list[Any]]:
    return [error["loc"] for error in response.json()["detail"]]


def step(database: Database, task_id: str, from_phase: Phase, to_phase: Phase) -> None:
    with database.write() as session:
        assert move(
            session,
            task_id=task_id,
            from_phase=from_phase,
            at_attempt=1,
            to_phase=to_phase,
            reason=Reason.COMPLETED if to_phase == Phase.SUCCEEDED else Reason.SCHEDULED,
            message=f"to {to_phase}",
            now=utcnow(),
        )


def finish(database: Database, task_id: str) -> None:
    step(database, task_id, Phase.PENDING, Phase.RUNNING)
    step(database, task_id, Phase.RUNNING, Phase.SUCCEEDED)


def add_capacity(database: Database, runtimes: dict[str, Any] | None = None) -> None:
    with database.write() as session:
        session.add(
            Capacity(
                node="local",
                cpus_total=2,
                cpu_ids=[0, 1],
                ram_total=8 * GIB,
                ram_allocatable=4 * GIB,
                storage_total=20 * GIB,
                storage_allocatable=10 * GIB,
                runtimes=runtimes or {},
                runtime_ok=True,
                heartbeat_at=utcnow(),
            )
        )
        session.commit()


# --- submit -------------------------------------------------------------------------------


def test_a_batch_is_stored_and_answered_with_its_ids_in_order(
    client: TestClient, database: Database
) -> None:
    sent = [body("print('a')"), body("print('b')", timeout_seconds=5), body("print('c')")]
    response = client.post("/batches", json={"tasks": sent})

    assert response.status_code == 201, response.text
    answer = response.json()
    assert set(answer) == {"id", "task_ids", "count"}
    assert answer["count"] == 3 and len(set(answer["task_ids"])) == 3
    assert response.headers["location"] == f"/batches/{answer['id']}"
    assert stored(database) == answer["task_ids"]
    for task_id, asked in zip(answer["task_ids"], sent, strict=True):
        task = client.get(f"/tasks/{task_id}").json()
        assert task["batch_id"] == answer["id"]
        assert task["spec"]["code"] == asked["code"]
        assert task["status"]["phase"] == "Pending"
    assert client.get(f"/tasks/{answer['task_ids'][1]}").json()["spec"]["timeout_seconds"] == 5
    # The batch's tasks share one creation time, and each has its Created transition.
    with database.read() as session:
        times = set(session.exec(select(Task.created_at)))
        firsts = list(session.exec(select(Transition.task_id).order_by(col(Transition.seq))))
    assert len(times) == 1
    assert firsts == answer["task_ids"]


def test_a_task_alone_has_no_batch_and_a_batch_task_spec_goes_back_to_post_tasks(
    client: TestClient,
) -> None:
    alone = client.post("/tasks", json=body()).json()
    assert alone["batch_id"] is None

    files = [{"name": "data.txt", "content": "x", "encoding": "utf8"}]
    rich = body("print(open('data.txt').read())", files=files, args=["-v"], env={"MODE": "a"})
    [task_id] = submit_batch(client, [rich])["task_ids"]
    spec = client.get(f"/tasks/{task_id}").json()["spec"]

    again = client.post("/tasks", json=spec)
    assert again.status_code == 201, again.text
    assert again.json()["spec"] == spec
    assert client.post("/batches", json={"tasks": [spec, spec]}).status_code == 201


def test_a_thousand_tasks_are_taken_and_one_more_is_refused(
    client: TestClient, database: Database
) -> None:
    assert submit_batch(client, bodies(1000))["count"] == 1000
    assert len(stored(database)) == 1000

    too_many = client.post("/batches", json={"tasks": bodies(1001)})
    assert too_many.status_code == 422
    assert locs(too_many) == [["body", "tasks"]]
    assert "1000" in too_many.json()["detail"][0]["msg"]
    empty = client.post("/batches", json={"tasks": []})
    assert empty.status_code == 422 and locs(empty) == [["body", "tasks"]]
    assert len(stored(database)) == 1000


def test_one_invalid_item_refuses_the_whole_batch_naming_it(
    client: TestClient, database: Database
) -> None:
    tasks = bodies(20)
    tasks[17]["resources"]["cpu"] = "1.5"
    tasks[3]["nope"] = True

    response = client.post("/batches", json={"tasks": tasks})

    assert response.status_code == 422
    assert sorted(locs(response), key=str) == [
        ["body", "tasks", 17, "resources", "cpu"],
        ["body", "tasks", 3, "nope"],
    ]
    assert stored(database) == []


def test_admission_refuses_the_whole_batch_naming_each_item(
    tmp_path: Path, database: Database
) -> None:
    add_capacity(database, runtimes={"python": {}})
    with make_client(tmp_path, database, max_code_bytes=100) as client:
        tasks = bodies(6)
        tasks[2]["resources"]["cpu"] = "64"  # more than the host has
        tasks[4]["code"] = "print(1)\x00"
        tasks[5]["runtime"] = "node"  # known, but not installed here

        response = client.post("/batches", json={"tasks": tasks})
        assert response.status_code == 422
        assert locs(response) == [
            ["body", "tasks", 2, "resources", "cpu"],
            ["body", "tasks", 4, "code"],
            ["body", "tasks", 5, "runtime"],
        ]
        assert "can allocate 2" in response.json()["detail"][0]["msg"]

        too_big = bodies(3)
        too_big[1]["code"] = "#" * 101
        response = client.post("/batches", json={"tasks": too_big})
        assert response.status_code == 413
        assert locs(response) == [["body", "tasks", 1, "code"]]
    assert stored(database) == []


def test_the_quota_takes_a_batch_whole_or_not_at_all(tmp_path: Path, database: Database) -> None:
    with make_client(tmp_path, database, user_max_active_tasks=5) as client:
        alice = bearer(new_user(client, "alice"))
        for _ in range(3):
            assert client.post("/tasks", json=body(), headers=alice).status_code == 201

        refused = client.post("/batches", json={"tasks": bodies(3)}, headers=alice)
        assert refused.status_code == 429
        detail = refused.json()["detail"]
        assert "3 unfinished tasks" in detail and "brings 3" in detail and "5" in detail
        assert len(stored(database)) == 3

        assert submit_batch(client, bodies(2), headers=alice)["count"] == 2
        assert len(stored(database)) == 5


def test_the_cpu_quota_counts_every_task_of_the_batch(tmp_path: Path, database: Database) -> None:
    with make_client(tmp_path, database, user_max_cpus=4, user_max_active_tasks=0) as client:
        alice = bearer(new_user(client, "alice"))
        tasks = [body(resources={**SMALL, "cpu": "2"}) for _ in range(3)]
        refused = client.post("/batches", json={"tasks": tasks}, headers=alice)
        assert refused.status_code == 429
        assert "this batch for 6" in refused.json()["detail"]
        assert stored(database) == []
        assert submit_batch(client, tasks[:2], headers=alice)["count"] == 2


FULL_AFTER_50_TASKS = """
CREATE FUNCTION disk_fills() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (SELECT count(*) FROM tasks) > 50 THEN
        RAISE EXCEPTION 'could not extend file: No space left on device'
            USING ERRCODE = 'disk_full';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER disk_fills AFTER INSERT ON tasks FOR EACH STATEMENT EXECUTE FUNCTION disk_fills();
"""


def test_a_storage_failure_midway_stores_none_of_the_batch(
    client: TestClient, database: Database
) -> None:
    before = client.post("/tasks", json=body()).json()["id"]
    if database.is_postgres:
        # Postgres is failed by a trigger that raises what a full disk raises (disk_full),
        # once the batch's INSERTs are part of the way in.
        with database.write() as session:
            session.connection().exec_driver_sql(FULL_AFTER_50_TASKS)
            session.commit()
    else:
        # The database may grow by a few pages only: the batch's INSERTs fill it part of the
        # way, then SQLite answers SQLITE_FULL, as a full disk does.
        with database.read() as session:
            pages = session.connection().exec_driver_sql("PRAGMA page_count").scalar_one()

        @event.listens_for(database.writer, "connect")
        def _small(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.execute(f"PRAGMA max_page_count={pages + 40}")

        database.writer.dispose()

    response = client.post("/batches", json={"tasks": [body("#" * 2000) for _ in range(200)]})

    assert response.status_code == 503, response.text
    assert "full" in response.json()["detail"]
    assert response.headers["retry-after"]
    assert stored(database) == [before]
    with database.read() as session:
        assert list(session.exec(select(Transition.task_id))) == [before]


# --- the group ------------------------------------------------------------------------------


def test_a_batch_is_counted_by_phase(client: TestClient, database: Database) -> None:
    answer = submit_batch(client, bodies(4))
    ids = answer["task_ids"]
    finish(database, ids[0])
    step(database, ids[1], Phase.PENDING, Phase.RUNNING)
    client.post("/tasks", json=body())  # not in the batch

    summary = client.get(f"/batches/{answer['id']}")

    assert summary.status_code == 200
    read = summary.json()
    assert read["phases"] == {
        "Pending": 2,
        "Scheduled": 0,
        "Running": 1,
        "Succeeded": 1,
        "Failed": 0,
        "TimedOut": 0,
        "Cancelled": 0,
    }
    assert (read["id"], read["count"], read["done"], read["cancel_requested"]) == (
        answer["id"],
        4,
        1,
        0,
    )
    assert read["created_at"] == client.get(f"/tasks/{ids[0]}").json()["created_at"]
    missing = client.get("/batches/nope")
    assert missing.status_code == 404 and "batch nope not found" in missing.json()["detail"]


def test_tasks_are_listed_by_batch_a_page_at_a_time(client: TestClient) -> None:
    client.post("/tasks", json=body())
    answer = submit_batch(client, bodies(7))
    client.post("/tasks", json=body())

    seen: list[str] = []
    cursor = None
    for _ in range(4):
        params: dict[str, Any] = {"batch": answer["id"], "limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/tasks", params=params).json()
        seen += [task["id"] for task in page["items"]]
        assert all(task["batch_id"] == answer["id"] for task in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == answer["task_ids"][::-1]  # newest first, as every list
    assert client.get("/tasks", params={"batch": "nope"}).json()["items"] == []
    assert client.get("/tasks", params={"batch": "x" * 65}).status_code == 422


def test_cancelling_a_batch_requests_it_of_each_unfinished_task(
    client: TestClient, database: Database
) -> None:
    answer = submit_batch(client, bodies(3))
    ids = answer["task_ids"]
    finish(database, ids[0])
    step(database, ids[1], Phase.PENDING, Phase.RUNNING)
    versions = {i: client.get(f"/tasks/{i}").json()["resource_version"] for i in ids}

    response = client.delete(f"/batches/{answer['id']}")

    assert response.status_code == 202
    assert response.json()["cancel_requested"] == 2
    assert response.json()["done"] == 1
    for task_id, wanted in zip(ids, [False, True, True], strict=True):
        task = client.get(f"/tasks/{task_id}").json()
        assert task["status"]["cancel_requested"] is wanted
        assert task["resource_version"] == versions[task_id] + wanted
    # Asking again changes nothing.
    assert client.delete(f"/batches/{answer['id']}").json()["cancel_requested"] == 2
    assert client.get(f"/tasks/{ids[1]}").json()["resource_version"] == versions[ids[1]] + 1
    assert client.delete("/batches/nope").status_code == 404


def test_another_users_batch_is_not_found(tmp_path: Path, database: Database) -> None:
    with make_client(tmp_path, database) as client:
        alice, bob = bearer(new_user(client, "alice")), bearer(new_user(client, "bob"))
        answer = submit_batch(client, bodies(2), headers=alice)
        path = f"/batches/{answer['id']}"

        assert client.get(path, headers=bob).status_code == 404
        assert client.delete(path, headers=bob).status_code == 404
        listed = client.get("/tasks", params={"batch": answer["id"]}, headers=bob).json()
        assert listed["items"] == []
        watch = client.get("/watch", params={"batch": answer["id"]}, headers=bob)
        assert watch.status_code == 404
        assert client.get(f"/tasks/{answer['task_ids'][0]}", headers=bob).status_code == 404

        assert client.get(path, headers=alice).json()["cancel_requested"] == 0  # bob's did nothing
        assert client.get(path, headers=alice).json()["count"] == 2
        assert client.get(path, headers=bearer(ADMIN)).json()["count"] == 2


# --- watch ----------------------------------------------------------------------------------


def sse_events(
    lines: Iterator[str], count: int | None, within: float = 5.0
) -> list[dict[str, Any]]:
    """The next `count` transition events of a stream (every one to its end with None)."""
    deadline = time.monotonic() + within
    events: list[dict[str, Any]] = []
    for line in lines:
        assert time.monotonic() < deadline, f"got only {events}"
        if line.startswith("data: "):
            events.append(json.loads(line.removeprefix("data: ")))
            if count is not None and len(events) == count:
                return events
    assert count is None, f"the stream ended after {events}"
    return events


def test_a_finished_batch_is_watched_from_its_beginning_to_its_end(
    client: TestClient, database: Database
) -> None:
    answer = submit_batch(client, bodies(2))
    other = client.post("/tasks", json=body()).json()["id"]
    for task_id in [*answer["task_ids"], other]:
        finish(database, task_id)

    # The stream ends by itself: every task of the batch has ended.
    response = client.get("/watch", params={"batch": answer["id"]})

    assert response.status_code == 200
    events = sse_events(iter(response.text.splitlines()), None)
    moves = [(event["task_id"], event["to_phase"]) for event in events]
    first, second = answer["task_ids"]
    assert sorted(moves) == sorted(
        (task_id, phase)
        for task_id in (first, second)
        for phase in ("Pending", "Running", "Succeeded")
    )
    assert client.get("/watch", params={"batch": "nope"}).status_code == 404


def test_a_batch_watch_follows_its_tasks_only_resumes_and_ends_with_the_last(
    tmp_path: Path, database: Database
) -> None:
    settings = Settings(data_dir=tmp_path, watch_heartbeat_seconds=0.2)
    with serving(settings, database) as url, httpx.Client(base_url=url, timeout=5) as http:
        answer = http.post("/batches", json={"tasks": bodies(2)}).json()
        others = http.post("/batches", json={"tasks": bodies(1)}).json()["task_ids"]
        first, second = answer["task_ids"]

        with http.stream("GET", "/watch", params={"batch": answer["id"]}) as stream:
            lines = stream.iter_lines()
            created = sse_events(lines, 2)
            assert [event["task_id"] for event in created] == [first, second]
            finish(database, others[0])  # not this batch's
            finish(database, first)
            moved = sse_events(lines, 2)
            assert [(e["task_id"], e["to_phase"]) for e in moved] == [
                (first, "Running"),
                (first, "Succeeded"),
            ]

        # Resumed after the first task's end: the rest, then the end of the stream.
        finish(database, second)
        headers = {"Last-Event-ID": str(moved[-1]["seq"])}
        with http.stream(
            "GET", "/watch", params={"batch": answer["id"]}, headers=headers
        ) as stream:
            rest = sse_events(stream.iter_lines(), None)
        assert [(e["task_id"], e["to_phase"]) for e in rest] == [
            (second, "Running"),
            (second, "Succeeded"),
        ]
