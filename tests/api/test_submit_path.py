"""The fast path of POST /tasks: it answers from the column values it stores (no ORM row),
stores a batch of submissions with one multi-row INSERT per table, checks quotas inside that
transaction, and reads the host's limits at most once a second. Each test checks that what a
client or the database sees is what the ORM path stored and answered before.
"""

import asyncio
import concurrent.futures
import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from live_server import serving
from sqlalchemy import text
from sqlmodel import select

from api import fast_submit, watch
from api.admission import HostLimitsCache
from api.app import create_app
from api.submissions import SubmissionWriter, task_values
from models.clock import utcnow
from models.database import Database, open_database
from models.fit import HostLimits
from models.phases import Phase, Reason
from models.quantities import GIB, MIB
from models.settings import Settings
from models.tables import Capacity, Task, Transition

SMALL = {"cpu": "1", "gpu": "0", "ram": "64MB", "storage": "100MB"}
ADMIN = "admin-secret"


def body(**changes: Any) -> dict[str, Any]:
    result: dict[str, Any] = {
        "task_type": "execute_code",
        "code": "print(1)",
        "resources": dict(SMALL),
    }
    result.update(changes)
    return result


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    db = open_database(database_url)
    yield db
    db.dispose()


@pytest.fixture
def client(tmp_path: Path, database: Database) -> Iterator[TestClient]:
    with TestClient(
        create_app(Settings(data_dir=tmp_path), database), base_url="http://127.0.0.1"
    ) as test_client:
        yield test_client


def new_values(**spec: Any) -> dict[str, Any]:
    defaults: dict[str, Any] = dict(
        owner=None,
        task_type="execute_code",
        code="print(1)",
        cpu=1,
        cpu_text="1",
        gpu=0,
        gpu_text="0",
        ram="64MB",
        ram_bytes=64 * MIB,
        storage="100MB",
        storage_bytes=100 * MIB,
        timeout_seconds=30,
        stdin=None,
        interactive=False,
    )
    return task_values(**{**defaults, **spec})


def raw_rows(database: Database, sql: str) -> list[dict[str, Any]]:
    with database.read() as session:
        return [dict(row._mapping) for row in session.execute(text(sql))]


# --- the answer ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({}, id="plain"),
        pytest.param(
            {"code": "print('h\u00e9llo \u2603 \U0001f600')\n\t# \"q\" \\ \u2028 \x01 \x7f"},
            id="unicode-and-escapes",
        ),
        pytest.param(
            {"stdin": "line 1\nline 2\r\n\u00ff", "timeout_seconds": 7}, id="stdin-and-timeout"
        ),
        pytest.param(
            {"interactive": True, "resources": {**SMALL, "ram": "1gb"}},
            id="interactive-and-normalized-size",
        ),
    ],
)
def test_the_answer_to_a_submit_is_byte_for_byte_what_a_read_answers(
    client: TestClient, changes: dict[str, Any]
) -> None:
    created = client.post("/tasks", json=body(**changes))
    assert created.status_code == 201, created.text
    task_id = created.json()["id"]

    read = client.get(f"/tasks/{task_id}")

    assert read.status_code == 200
    assert created.content == read.content
    assert created.headers["content-type"] == read.headers["content-type"] == "application/json"
    assert created.headers["location"] == f"/tasks/{task_id}"


def test_the_answer_with_wait_is_the_task_as_read(client: TestClient) -> None:
    created = client.post("/tasks?wait=0.2", json=body())

    assert created.status_code == 201, created.text
    assert created.json()["status"]["phase"] == "Pending"  # no controller runs here
    assert created.content == client.get(f"/tasks/{created.json()['id']}").content
    assert created.headers["location"] == f"/tasks/{created.json()['id']}"


# --- the fast path and the route -----------------------------------------------------------

# A query parameter the route does not know (ignored, as any) sends a request past the fast
# path to the FastAPI route: both must answer every request alike.
VIA_ROUTE = "/tasks?via=route"


def comparable(response: httpx.Response) -> tuple[int, Any, dict[str, str]]:
    content = response.json()
    if response.status_code == 201:
        content = {**content, "id": None, "created_at": None}
    headers = {
        name: value
        for name, value in response.headers.items()
        if name in {"content-type", "www-authenticate", "retry-after"}
    }
    return response.status_code, content, headers


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(body(), id="valid"),
        pytest.param(body(code="#" * 20_000), id="code-too-large"),
        pytest.param(body(code="print(1)\x00"), id="nul-in-code"),
        pytest.param(body(timeout_seconds=0), id="timeout-out-of-range"),
        pytest.param(body(resources={**SMALL, "cpu": "3"}), id="beyond-the-host"),
        pytest.param(body(resources={**SMALL, "ram": "1MB"}), id="below-the-minimum"),
        pytest.param(body(resources={**SMALL, "cpu": "two"}), id="invalid-format"),
        pytest.param(body(extra=1), id="unknown-field"),
        pytest.param([1, 2], id="not-an-object"),
    ],
)
def test_the_fast_path_answers_as_the_route_does(
    tmp_path: Path, database: Database, payload: Any
) -> None:
    set_capacity(database, 2)
    settings = Settings(data_dir=tmp_path, max_code_bytes=10_000)
    with TestClient(create_app(settings, database), base_url="http://127.0.0.1") as test_client:
        fast = test_client.post("/tasks", json=payload)
        route = test_client.post(VIA_ROUTE, json=payload)

    assert comparable(fast) == comparable(route)


def test_a_plain_submission_takes_the_fast_path_and_one_with_a_query_the_route(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    taken: list[str] = []
    store = fast_submit.store_task

    async def counting(request: Any, task: Any, caller: Any) -> dict[str, Any]:
        values = await store(request, task, caller)
        taken.append(values["id"])
        return values

    monkeypatch.setattr(fast_submit, "store_task", counting)
    fast = client.post("/tasks", json=body())
    route = client.post(VIA_ROUTE, json=body())
    waited = client.post("/tasks?wait=0", json=body())

    assert [fast.status_code, route.status_code, waited.status_code] == [201, 201, 201]
    assert taken == [fast.json()["id"]]


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        pytest.param(b"{not json", "application/json", id="invalid-json"),
        pytest.param(b"", "application/json", id="no-body"),
        pytest.param(b'{"task_type": "execute_code"}', "text/plain", id="not-sent-as-json"),
    ],
)
def test_what_the_fast_path_hands_on_keeps_its_body(
    client: TestClient, content: bytes, content_type: str
) -> None:
    fast = client.post("/tasks", content=content, headers={"content-type": content_type})
    route = client.post(VIA_ROUTE, content=content, headers={"content-type": content_type})

    assert fast.status_code in {415, 422}
    assert comparable(fast) == comparable(route)


def test_callers_are_told_apart_on_the_fast_path_as_on_the_route(
    tmp_path: Path, database: Database
) -> None:
    settings = Settings(data_dir=tmp_path, admin_token=ADMIN, user_max_active_tasks=1)
    with TestClient(create_app(settings, database), base_url="http://127.0.0.1") as test_client:
        open_mode = [
            comparable(test_client.post(path, json=body())) for path in ("/tasks", VIA_ROUTE)
        ]
        alice = test_client.post(
            "/admin/tokens", json={"name": "alice"}, headers={"Authorization": f"Bearer {ADMIN}"}
        ).json()["token"]
        answers: dict[str, list[Any]] = {}
        for name, headers in (
            ("anonymous", {}),
            ("unknown", {"Authorization": "Bearer ty_x"}),
            ("not-bearer", {"Authorization": f"Basic {alice}"}),
            ("admin", {"Authorization": f"Bearer {ADMIN}"}),
            ("alice", {"Authorization": f"Bearer {alice}"}),
        ):
            answers[name] = [
                comparable(test_client.post(path, json=body(), headers=headers))
                for path in ("/tasks", VIA_ROUTE)
            ]

    assert open_mode[0] == open_mode[1] and open_mode[0][0] == 201
    for name, (fast, route) in answers.items():
        assert fast[:2] == route[:2] or name == "alice", name
    assert [answers[name][0][0] for name in answers] == [401, 401, 401, 201, 201]
    # alice's quota is one unfinished task: the fast path took it, so the route refuses her.
    assert answers["alice"][1][0] == 429


# --- the stored rows ----------------------------------------------------------------------


def test_new_values_name_every_task_column_but_pk() -> None:
    assert set(new_values()) == set(Task.model_fields) - {"pk"}


def test_stored_rows_are_those_the_orm_stores(tmp_path: Path, database: Database) -> None:
    values = new_values(code="print('x')", stdin="in", interactive=True, owner="user-1")
    writer = SubmissionWriter(database, Settings(data_dir=tmp_path))

    async def submit() -> None:
        await writer.insert(dict(values))

    asyncio.run(submit())
    writer.close()
    orm_id = "orm" + values["id"][3:]
    with database.write() as session:
        task = Task(**{**values, "id": orm_id})
        session.add(task)
        session.add(
            Transition(
                task_id=orm_id,
                from_phase=None,
                to_phase=Phase.PENDING,
                reason=Reason.CREATED,
                message="task submitted",
                at=task.created_at,
                resource_version=task.resource_version,
            )
        )
        session.commit()

    tasks = raw_rows(database, "SELECT * FROM tasks ORDER BY pk")
    transitions = raw_rows(database, "SELECT * FROM transitions ORDER BY seq")
    assert [row["id"] for row in tasks] == [values["id"], orm_id]
    assert {**tasks[0], "pk": None, "id": None} == {**tasks[1], "pk": None, "id": None}
    # SQLite hands JSON back as its text, psycopg as the value it decodes.
    no_cpus = [] if database.is_postgres else "[]"
    assert tasks[0]["phase"] == "Pending" and tasks[0]["assigned_cpus"] == no_cpus
    assert [row["task_id"] for row in transitions] == [values["id"], orm_id]
    assert {**transitions[0], "seq": None, "task_id": None} == {
        **transitions[1],
        "seq": None,
        "task_id": None,
    }
    assert transitions[0]["at"] == tasks[0]["created_at"]


def test_a_stored_batch_tells_the_commit_listeners(tmp_path: Path, database: Database) -> None:
    # `taskyard serve` wakes its controller this way on every commit of the API.
    heard: list[int] = []
    database.after_commit(lambda: heard.append(task_count(database)))
    writer = SubmissionWriter(database, Settings(data_dir=tmp_path))

    async def submit_two() -> None:
        await asyncio.gather(writer.insert(new_values()), writer.insert(new_values()))

    asyncio.run(submit_two())
    writer.close()
    assert heard == [2]  # once, after both rows were committed


def task_count(database: Database) -> int:
    with database.read() as session:
        return len(list(session.exec(select(Task.id))))


def test_a_batch_larger_than_one_statement_holds_is_stored_whole(
    tmp_path: Path, database: Database
) -> None:
    # More rows than SQLite's smallest parameter limit lets one INSERT carry.
    many = [new_values(code=f"print({n})") for n in range(150)]
    writer = SubmissionWriter(database, Settings(data_dir=tmp_path))

    async def submit_all() -> None:
        await asyncio.gather(*(writer.insert(values) for values in many))

    asyncio.run(submit_all())
    writer.close()
    with database.read() as session:
        stored = list(session.exec(select(Task.id, Task.code).order_by(Task.pk)))
        transitions = list(session.exec(select(Transition.task_id).order_by(Transition.seq)))
    assert stored == [(values["id"], values["code"]) for values in many]
    assert transitions == [values["id"] for values in many]


# --- quotas -------------------------------------------------------------------------------


def test_a_quota_holds_within_one_batch(tmp_path: Path, database: Database) -> None:
    settings = Settings(data_dir=tmp_path, user_max_active_tasks=3, user_max_cpus=0)
    writer = SubmissionWriter(database, settings)

    async def submit_at_once() -> list[BaseException | None]:
        submissions = [writer.insert(new_values(owner="alice")) for _ in range(5)]
        submissions.append(writer.insert(new_values(owner="bob")))
        return await asyncio.gather(*submissions, return_exceptions=True)

    outcomes = asyncio.run(submit_at_once())
    writer.close()

    assert outcomes[:3] == [None, None, None]
    for refused in outcomes[3:5]:
        assert getattr(refused, "status_code", None) == 429
        assert "3 unfinished tasks" in str(getattr(refused, "detail", ""))
    assert outcomes[5] is None  # another user's quota is their own
    with database.read() as session:
        owners = sorted(session.exec(select(Task.owner)))
    assert owners == ["alice", "alice", "alice", "bob"]


def test_concurrent_submits_never_exceed_the_cpu_quota(tmp_path: Path, database: Database) -> None:
    settings = Settings(data_dir=tmp_path, admin_token=ADMIN, user_max_cpus=4)
    with serving(settings, database) as url, httpx.Client(base_url=url, timeout=60) as http:
        created = http.post(
            "/admin/tokens", json={"name": "alice"}, headers={"Authorization": f"Bearer {ADMIN}"}
        )
        token = created.json()["token"]
        two_cpus = body(resources={**SMALL, "cpu": "2"})

        def submit(_: int) -> httpx.Response:
            return http.post("/tasks", json=two_cpus, headers={"Authorization": f"Bearer {token}"})

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(submit, range(8)))

    codes = sorted(answer.status_code for answer in answers)
    assert codes == [201, 201] + [429] * 6, [answer.text for answer in answers]
    for answer in answers:
        if answer.status_code == 429:
            assert "CPUs" in answer.json()["detail"]
    with database.read() as session:
        assert len(list(session.exec(select(Task.id)))) == 2


# --- the host's limits --------------------------------------------------------------------


def set_capacity(database: Database, cpus: int) -> None:
    with database.write() as session:
        row = session.get(Capacity, "local") or Capacity(node="local")
        row.cpu_ids = list(range(cpus))
        row.cpus_total = cpus
        row.ram_allocatable = 4 * GIB
        row.storage_allocatable = 10 * GIB
        row.heartbeat_at = utcnow() - timedelta(seconds=1)
        session.add(row)
        session.commit()


def test_host_limits_are_read_again_only_once_they_are_old(database: Database) -> None:
    set_capacity(database, 2)
    kept, fresh = HostLimitsCache(database, max_age=3600), HostLimitsCache(database, max_age=0)

    async def both() -> tuple[HostLimits | None, HostLimits | None]:
        return await kept.current(), await fresh.current()

    first = asyncio.run(both())
    set_capacity(database, 8)
    second = asyncio.run(both())

    assert first == (HostLimits(2, 0, 4 * GIB, 10 * GIB),) * 2
    assert second == (HostLimits(2, 0, 4 * GIB, 10 * GIB), HostLimits(8, 0, 4 * GIB, 10 * GIB))


def test_without_a_controller_report_there_are_no_limits(database: Database) -> None:
    assert asyncio.run(HostLimitsCache(database).current()) is None


def test_a_request_beyond_the_host_is_refused_from_the_cached_limits(
    client: TestClient, database: Database
) -> None:
    set_capacity(database, 2)  # before the app's first read
    response = client.post("/tasks", json=body(resources={**SMALL, "cpu": "3"}))

    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "exceeds_capacity"
    assert response.json()["detail"][0]["loc"] == ["body", "resources", "cpu"]


# --- the transition feed while no one watches ---------------------------------------------


def add_tasks(database: Database, count: int) -> list[str]:
    ids = []
    with database.write() as session:
        for n in range(count):
            task = Task(**new_values(code=f"print({n})"))
            ids.append(task.id)
            session.add(task)
            session.add(
                Transition(
                    task_id=task.id,
                    to_phase=Phase.PENDING,
                    reason=Reason.CREATED,
                    message="task submitted",
                    resource_version=1,
                )
            )
        session.commit()
    return ids


def light_connection(tmp_path: Path) -> sqlite3.Connection:
    return sqlite3.connect(tmp_path / "t.db", check_same_thread=False)


def end(database: Database, task_id: str) -> None:
    with database.write() as session:
        session.add(
            Transition(
                task_id=task_id,
                from_phase=Phase.RUNNING,
                to_phase=Phase.SUCCEEDED,
                reason=Reason.COMPLETED,
                message="exit code 0",
                resource_version=4,
            )
        )
        session.commit()


@pytest.mark.parametrize("watched", [False, True], ids=["no-one-watches", "a-watcher"])
def test_a_waiting_request_hears_its_task_end_and_only_that(
    tmp_path: Path, database: Database, watched: bool
) -> None:
    ids = add_tasks(database, 3)
    end(database, ids[1])
    feed = watch.TransitionFeed(database, 0.01)
    if watched:
        feed.subscribe()  # the feed then reads whole rows, through the engine

    async def publish() -> list[bool]:
        with (
            feed.ends_of(ids[0]) as moved_only,
            feed.ends_of(ids[1]) as ended,
            feed.ends_of("another") as other,
        ):
            # (On Postgres the feed has no light connection: it reads through the engine.)
            await feed._publish_new(None if database.is_postgres else light_connection(tmp_path))
            return [moved_only.is_set(), ended.is_set(), other.is_set()]

    assert asyncio.run(publish()) == [False, True, False]
    assert feed._last_seq == 4


def test_a_poke_from_another_thread_has_the_feed_look_at_once(
    tmp_path: Path, database: Database
) -> None:
    # A poll far longer than the test: only the poke can make the feed look.
    feed = watch.TransitionFeed(database, 3600)
    ids = add_tasks(database, 1)

    async def wait_for_the_end() -> float:
        await feed.start()
        try:
            await asyncio.sleep(0.05)  # the feed's first look is done
            began = time.monotonic()
            with feed.ends_of(ids[0]) as ended:

                def end_and_poke() -> None:
                    end(database, ids[0])
                    feed.poke()

                threading.Thread(target=end_and_poke).start()
                await asyncio.wait_for(ended.wait(), timeout=10)
            return time.monotonic() - began
        finally:
            await feed.stop()

    assert asyncio.run(wait_for_the_end()) < 5


def test_a_watcher_gets_every_transition_whole(tmp_path: Path, database: Database) -> None:
    ids = add_tasks(database, 3)
    feed = watch.TransitionFeed(database, 0.01)
    subscriber = feed.subscribe()

    asyncio.run(feed._publish_new(light_connection(tmp_path)))

    events = [subscriber.queue.get_nowait() for _ in range(3)]
    assert [event.task_id for event, _ in events] == ids
    assert [event.to_phase for event, _ in events] == ["Pending"] * 3
    assert all(frame.startswith(f"id: {event.seq}\n".encode()) for event, frame in events)
    assert subscriber.queue.empty()
