"""The task endpoints of the REST contract (`docs/api.md`), through the real app over a
real SQLite file per test, with no controller running.
"""

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlmodel import col, select

from api.app import create_app
from models.clock import utcnow
from models.database import Database, open_database
from models.quantities import GIB
from models.settings import Settings
from models.tables import Capacity, Task, Transition

EXAMPLE_1: dict[str, Any] = {
    "task_type": "execute_code",
    "code": "print('Hello, World!')",
    "resources": {"cpu": "2", "gpu": "0", "ram": "512MB", "storage": "1GB"},
}
EXAMPLE_2: dict[str, Any] = {
    "task_type": "execute_code",
    "code": "for i in range(5): print(f'Count {i}')",
    "resources": {"cpu": "1", "gpu": "0", "ram": "256MB", "storage": "500MB"},
}
SMALL = {"cpu": "1", "gpu": "0", "ram": "64MB", "storage": "100MB"}


def body(**changes: Any) -> dict[str, Any]:
    """A valid small request with top-level fields replaced."""
    result: dict[str, Any] = {
        "task_type": "execute_code",
        "code": "print(1)",
        "resources": dict(SMALL),
    }
    result.update(changes)
    return result


def with_resource(name: str, value: Any) -> dict[str, Any]:
    return body(resources={**SMALL, name: value})


# --- fixtures -----------------------------------------------------------------------------


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    db = open_database(database_url)
    yield db
    db.dispose()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path)


@pytest.fixture
def client(settings: Settings, database: Database) -> Iterator[TestClient]:
    with TestClient(create_app(settings, database), base_url="http://127.0.0.1") as test_client:
        yield test_client


@pytest.fixture
def small_code_client(tmp_path: Path, database: Database) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path, max_code_bytes=1000)
    with TestClient(create_app(settings, database), base_url="http://127.0.0.1") as test_client:
        yield test_client


def submit(client: TestClient, payload: dict[str, Any] | None = None) -> dict[str, Any]:
    response = client.post("/tasks", json=payload if payload is not None else body())
    assert response.status_code == 201, response.text
    task: dict[str, Any] = response.json()
    return task


def set_phase(database: Database, task_id: str, phase: str) -> None:
    with database.write() as session:
        session.execute(update(Task).where(col(Task.id) == task_id).values(phase=phase))
        session.commit()


def add_capacity(
    database: Database, *, runtime_ok: bool = True, runtime_message: str = "docker 27.0 reachable"
) -> None:
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
                runtime_ok=runtime_ok,
                runtime_message=runtime_message,
                heartbeat_at=utcnow(),
            )
        )
        session.commit()


def locs(response: Any) -> list[list[Any]]:
    detail = response.json()["detail"]
    assert isinstance(detail, list) and detail, detail
    return [entry["loc"] for entry in detail]


def messages(response: Any) -> str:
    return " ".join(entry["msg"] for entry in response.json()["detail"])


def task_count(database: Database) -> int:
    with database.read() as session:
        return len(list(session.exec(select(Task))))


# --- submit -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(EXAMPLE_1, id="example-1"),
        pytest.param(EXAMPLE_2, id="example-2"),
    ],
)
def test_seed_examples_are_accepted_as_pending(client: TestClient, payload: dict[str, Any]) -> None:
    response = client.post("/tasks", json=payload)

    assert response.status_code == 201, response.text
    task = response.json()
    assert response.headers["location"] == f"/tasks/{task['id']}"
    assert task["status"]["phase"] == "Pending"
    assert task["spec"]["code"] == payload["code"]
    assert task["spec"]["task_type"] == "execute_code"
    assert task["spec"]["timeout_seconds"] == 30
    assert task["spec"]["resources"] == payload["resources"]
    assert task["created_at"].endswith("Z")
    assert task["status"]["finished_at"] is None


def test_get_returns_the_submitted_task(client: TestClient) -> None:
    created = submit(client, EXAMPLE_1)

    response = client.get(f"/tasks/{created['id']}")

    assert response.status_code == 200
    assert response.json() == created


def test_get_unknown_task_is_404_with_detail(client: TestClient) -> None:
    response = client.get("/tasks/does-not-exist")

    assert response.status_code == 404
    assert "does-not-exist" in response.json()["detail"]


def test_unit_is_case_insensitive_and_comes_back_as_written(
    client: TestClient, database: Database
) -> None:
    task = submit(client, body(resources={**SMALL, "ram": "1gb", "storage": "512mb"}))

    assert task["spec"]["resources"]["ram"] == "1gb"
    assert task["spec"]["resources"]["storage"] == "512mb"
    with database.read() as session:
        row = session.exec(select(Task).where(Task.id == task["id"])).one()
    assert (row.ram_bytes, row.storage_bytes) == (GIB, GIB // 2)


def test_timeout_and_stdin_are_stored(client: TestClient) -> None:
    task = submit(client, body(timeout_seconds=600, stdin="42\n"))

    assert task["spec"]["timeout_seconds"] == 600
    assert task["spec"]["stdin"] == "42\n"


# --- validation -----------------------------------------------------------------------------

BAD_COUNTS = ["-1", "1.5", " 2", "2 ", "two", "", "²", "0x2"]
BAD_SIZES = ["512", "512KB", "1.5GB", "GB", "1 GB", "", "-1GB", " 1GB", "1GBB", "²MB"]


@pytest.mark.parametrize("field", ["cpu", "gpu"])
@pytest.mark.parametrize("value", [*BAD_COUNTS, 2, 2.0, None, ["2"]], ids=lambda v: repr(v))
def test_bad_count_is_422_naming_the_field(client: TestClient, field: str, value: Any) -> None:
    response = client.post("/tasks", json=with_resource(field, value))

    assert response.status_code == 422, response.text
    assert ["body", "resources", field] in locs(response)
    assert client.get("/tasks").json()["items"] == []


@pytest.mark.parametrize("field", ["ram", "storage"])
@pytest.mark.parametrize("value", [*BAD_SIZES, 512, None], ids=lambda v: repr(v))
def test_bad_size_is_422_naming_the_field(client: TestClient, field: str, value: Any) -> None:
    response = client.post("/tasks", json=with_resource(field, value))

    assert response.status_code == 422, response.text
    assert ["body", "resources", field] in locs(response)


@pytest.mark.parametrize(
    ("payload", "loc"),
    [
        pytest.param(body(task_type="run_shell"), ["body", "task_type"], id="unknown-task-type"),
        pytest.param(body(task_type=None), ["body", "task_type"], id="null-task-type"),
        pytest.param(
            {"task_type": "execute_code", "code": "x"},
            ["body", "resources"],
            id="missing-resources",
        ),
        pytest.param(
            {"task_type": "execute_code", "resources": SMALL}, ["body", "code"], id="missing-code"
        ),
        pytest.param(body(code=123), ["body", "code"], id="code-not-a-string"),
        pytest.param(
            body(resources={"cpu": "1", "gpu": "0", "ram": "64MB"}),
            ["body", "resources", "storage"],
            id="missing-storage",
        ),
        pytest.param(body(priority=5), ["body", "priority"], id="extra-top-level-field"),
        pytest.param(
            body(resources={**SMALL, "disk": "1GB"}),
            ["body", "resources", "disk"],
            id="extra-resource-field",
        ),
        pytest.param(body(resources="2 cpus"), ["body", "resources"], id="resources-not-object"),
        pytest.param(body(timeout_seconds=0), ["body", "timeout_seconds"], id="timeout-0"),
        pytest.param(body(timeout_seconds=601), ["body", "timeout_seconds"], id="timeout-601"),
        pytest.param(body(timeout_seconds=-5), ["body", "timeout_seconds"], id="timeout-negative"),
        pytest.param(body(timeout_seconds="30"), ["body", "timeout_seconds"], id="timeout-string"),
        pytest.param(body(timeout_seconds=True), ["body", "timeout_seconds"], id="timeout-bool"),
        pytest.param(body(timeout_seconds=1.5), ["body", "timeout_seconds"], id="timeout-float"),
        pytest.param(body(stdin=5), ["body", "stdin"], id="stdin-not-a-string"),
        pytest.param(
            with_resource("cpu", "99999999999999999999"),
            ["body", "resources", "cpu"],
            id="cpu-absurd",
        ),
        pytest.param(
            with_resource("ram", "99999999999GB"), ["body", "resources", "ram"], id="ram-absurd"
        ),
    ],
)
def test_malformed_body_is_422_naming_the_field(
    client: TestClient, database: Database, payload: dict[str, Any], loc: list[str]
) -> None:
    response = client.post("/tasks", json=payload)

    assert response.status_code == 422, response.text
    assert loc in locs(response)
    assert task_count(database) == 0


@pytest.mark.parametrize("ram", ["0MB", "5MB"])
def test_ram_below_engine_minimum_names_the_minimum(client: TestClient, ram: str) -> None:
    response = client.post("/tasks", json=with_resource("ram", ram))

    assert response.status_code == 422, response.text
    assert ["body", "resources", "ram"] in locs(response)
    assert "6MB" in messages(response)


def test_ram_at_engine_minimum_is_accepted(client: TestClient) -> None:
    task = submit(client, with_resource("ram", "6MB"))

    assert task["spec"]["resources"]["ram"] == "6MB"


def test_zero_storage_is_422_naming_storage(client: TestClient) -> None:
    response = client.post("/tasks", json=with_resource("storage", "0MB"))

    assert response.status_code == 422, response.text
    assert ["body", "resources", "storage"] in locs(response)
    assert "1MB" in messages(response)


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"{not json", id="not-json"),
        pytest.param(b"", id="empty"),
        pytest.param(json.dumps([EXAMPLE_1]).encode(), id="array"),
        pytest.param(b'"execute_code"', id="string"),
        pytest.param(b"null", id="null"),
        pytest.param(b'{"task_type": "execute_code",', id="truncated"),
    ],
)
def test_body_that_is_not_a_task_object_is_422(
    client: TestClient, database: Database, content: bytes
) -> None:
    response = client.post("/tasks", content=content, headers={"content-type": "application/json"})

    assert response.status_code == 422, response.text
    assert all(loc[0] == "body" for loc in locs(response))
    assert task_count(database) == 0


def test_code_of_exactly_the_limit_is_accepted(small_code_client: TestClient) -> None:
    task = submit(small_code_client, body(code="x" * 1000))

    assert len(task["spec"]["code"]) == 1000


def test_code_one_byte_over_the_limit_is_refused(small_code_client: TestClient) -> None:
    response = small_code_client.post("/tasks", json=body(code="x" * 1001))

    assert response.status_code in (413, 422), response.text
    assert ["body", "code"] in locs(response)
    assert "1000" in messages(response)


def test_code_limit_counts_utf8_bytes_not_characters(small_code_client: TestClient) -> None:
    # "é" is two bytes in UTF-8: 500 of them are exactly the limit, one more byte is over.
    submit(small_code_client, body(code="é" * 500))
    response = small_code_client.post("/tasks", json=body(code="é" * 500 + "x"))

    assert response.status_code in (413, 422), response.text
    assert ["body", "code"] in locs(response)


def test_stdin_over_the_limit_is_refused_naming_stdin(small_code_client: TestClient) -> None:
    response = small_code_client.post("/tasks", json=body(stdin="x" * 1001))

    assert response.status_code in (413, 422), response.text
    assert ["body", "stdin"] in locs(response)


def test_huge_body_is_refused_before_it_is_read(small_code_client: TestClient) -> None:
    response = small_code_client.post("/tasks", json=body(code="x" * 200_000))

    assert response.status_code == 413
    assert "detail" in response.json()


def test_lone_surrogate_in_code_is_422_not_500(client: TestClient, database: Database) -> None:
    raw = (
        '{"task_type": "execute_code", "code": "print(\\ud800)", '
        '"resources": {"cpu": "1", "gpu": "0", "ram": "64MB", "storage": "100MB"}}'
    )

    response = client.post("/tasks", content=raw, headers={"content-type": "application/json"})

    assert response.status_code == 422, response.text
    assert ["body", "code"] in locs(response)
    assert task_count(database) == 0


def test_lone_surrogate_in_stdin_is_422_not_500(client: TestClient) -> None:
    raw = (
        '{"task_type": "execute_code", "code": "print(1)", "stdin": "\\udfff", '
        '"resources": {"cpu": "1", "gpu": "0", "ram": "64MB", "storage": "100MB"}}'
    )

    response = client.post("/tasks", content=raw, headers={"content-type": "application/json"})

    assert response.status_code == 422, response.text
    assert ["body", "stdin"] in locs(response)


def test_surrogate_pair_escape_is_a_valid_character(client: TestClient) -> None:
    raw = (
        '{"task_type": "execute_code", "code": "print(\'\\ud83d\\ude00\')", '
        '"resources": {"cpu": "1", "gpu": "0", "ram": "64MB", "storage": "100MB"}}'
    )

    response = client.post("/tasks", content=raw, headers={"content-type": "application/json"})

    assert response.status_code == 201, response.text
    assert response.json()["spec"]["code"] == "print('\U0001f600')"


@pytest.mark.parametrize(
    "code",
    [
        pytest.param(
            "print('\u202eolleh\u202c', 'e\u0301', '\u05e9\u05dc\u05d5\u05dd')",
            id="rtl-and-combining",
        ),
        pytest.param("\ufeffprint('bom')\r\n\t# \u2028 end", id="bom-crlf-separators"),
    ],
)
def test_unusual_text_in_code_is_stored_intact(client: TestClient, code: str) -> None:
    created = submit(client, body(code=code, stdin=code))

    fetched = client.get(f"/tasks/{created['id']}").json()

    assert created["spec"]["code"] == code
    assert fetched["spec"]["code"] == code
    assert fetched["spec"]["stdin"] == code


def test_nul_bytes_in_stdin_are_stored_intact(client: TestClient) -> None:
    # Code with a NUL is refused (tests/api/test_bad_input.py); stdin may hold any text.
    created = submit(client, body(stdin="a\x00b\x00"))

    assert client.get(f"/tasks/{created['id']}").json()["spec"]["stdin"] == "a\x00b\x00"


# --- requests that can never fit this host ---------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "host_has"),
    [
        pytest.param("cpu", "3", "allocate 2", id="cpu"),
        pytest.param("gpu", "1", "allocate 0", id="gpu"),
        pytest.param("ram", "5GB", "allocate 4GB", id="ram"),
        pytest.param("storage", "11GB", "allocate 10GB", id="storage"),
    ],
)
def test_request_that_can_never_fit_is_422_saying_what_the_host_has(
    client: TestClient, database: Database, field: str, value: str, host_has: str
) -> None:
    add_capacity(database)

    response = client.post("/tasks", json=with_resource(field, value))

    assert response.status_code == 422, response.text
    assert ["body", "resources", field] in locs(response)
    assert host_has in messages(response)
    assert task_count(database) == 0


def test_request_that_fits_exactly_is_accepted(client: TestClient, database: Database) -> None:
    add_capacity(database)

    task = submit(client, body(resources={"cpu": "2", "gpu": "0", "ram": "4GB", "storage": "10GB"}))

    assert task["status"]["phase"] == "Pending"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("cpu", "3"),
        ("gpu", "1"),
        ("ram", "5GB"),
        ("storage", "11GB"),
    ],
)
def test_without_capacity_report_a_large_request_is_accepted(
    client: TestClient, field: str, value: str
) -> None:
    task = submit(client, with_resource(field, value))

    assert task["status"]["phase"] == "Pending"


# --- list ---------------------------------------------------------------------------------


def test_list_is_newest_first(client: TestClient) -> None:
    ids = [submit(client)["id"] for _ in range(3)]

    response = client.get("/tasks")

    assert response.status_code == 200
    page = response.json()
    assert [t["id"] for t in page["items"]] == ids[::-1]
    assert page["next_cursor"] is None


def test_empty_list(client: TestClient) -> None:
    assert client.get("/tasks").json() == {"items": [], "next_cursor": None}


def test_pagination_visits_every_task_exactly_once(client: TestClient) -> None:
    ids = [submit(client)["id"] for _ in range(7)]

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor is not None:
            params["cursor"] = cursor
        response = client.get("/tasks", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["items"]) <= 3
        seen += [t["id"] for t in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert pages < 10, "pagination does not end"

    assert seen == ids[::-1]
    assert pages == 3


def test_pagination_with_limit_equal_to_count_has_no_next_page(client: TestClient) -> None:
    for _ in range(2):
        submit(client)

    page = client.get("/tasks", params={"limit": 2}).json()

    assert len(page["items"]) == 2
    assert page["next_cursor"] is None


def test_pagination_is_stable_when_tasks_arrive_between_pages(client: TestClient) -> None:
    ids = [submit(client)["id"] for _ in range(4)]

    first = client.get("/tasks", params={"limit": 2}).json()
    newer = submit(client)["id"]
    second = client.get("/tasks", params={"limit": 2, "cursor": first["next_cursor"]}).json()

    listed = [t["id"] for t in first["items"] + second["items"]]
    assert listed == ids[::-1]
    assert newer not in listed


def test_list_filters_by_phase(client: TestClient, database: Database) -> None:
    pending = submit(client)["id"]
    running = submit(client)["id"]
    set_phase(database, running, "Running")

    pending_page = client.get("/tasks", params={"phase": "Pending"}).json()
    running_page = client.get("/tasks", params={"phase": "Running"}).json()
    done_page = client.get("/tasks", params={"phase": "Succeeded"}).json()

    assert [t["id"] for t in pending_page["items"]] == [pending]
    assert [t["id"] for t in running_page["items"]] == [running]
    assert done_page["items"] == []


def test_phase_filter_combines_with_pagination(client: TestClient, database: Database) -> None:
    ids = [submit(client)["id"] for _ in range(6)]
    for task_id in ids[::2]:
        set_phase(database, task_id, "Failed")

    first = client.get("/tasks", params={"phase": "Pending", "limit": 2}).json()
    second = client.get(
        "/tasks", params={"phase": "Pending", "limit": 2, "cursor": first["next_cursor"]}
    ).json()

    assert [t["id"] for t in first["items"] + second["items"]] == ids[1::2][::-1]
    assert second["next_cursor"] is None


@pytest.mark.parametrize("given", ["running", "RUNNING", "rUnNiNg"])
def test_the_phase_filter_takes_any_case(
    client: TestClient, database: Database, given: str
) -> None:
    submit(client)
    running = submit(client)["id"]
    set_phase(database, running, "Running")

    page = client.get("/tasks", params={"phase": given})

    assert page.status_code == 200, page.text
    assert [t["id"] for t in page.json()["items"]] == [running]


def set_id(database: Database, task_id: str, new_id: str) -> None:
    with database.write() as session:
        session.execute(update(Task).where(col(Task.id) == task_id).values(id=new_id))
        session.commit()


def test_id_prefix_lists_the_tasks_whose_id_starts_with_it(
    client: TestClient, database: Database
) -> None:
    ids = [submit(client)["id"] for _ in range(4)]
    set_id(database, ids[0], "abcdef01" + "0" * 24)
    set_id(database, ids[1], "abcdef01" + "1" * 24)
    set_id(database, ids[2], "abcdef02" + "2" * 24)

    def listed(prefix: str, **params: Any) -> list[str]:
        response = client.get("/tasks", params={"id_prefix": prefix, **params})
        assert response.status_code == 200, response.text
        return [t["id"] for t in response.json()["items"]]

    assert listed("abcdef01") == ["abcdef01" + "1" * 24, "abcdef01" + "0" * 24]  # newest first
    assert listed("abcdef02") == ["abcdef02" + "2" * 24]
    assert listed("abcdef0") == [
        "abcdef02" + "2" * 24,
        "abcdef01" + "1" * 24,
        "abcdef01" + "0" * 24,
    ]
    assert listed(ids[3]) == [ids[3]]  # a whole id is its own prefix
    assert listed("abcdef03") == []
    assert listed("ABCDEF01") == []  # ids are compared as they are
    assert listed("abcdef_1") == [] and listed("abcdef%") == []  # no LIKE wildcards
    assert listed("abcdef01", limit=1) == ["abcdef01" + "1" * 24]
    set_phase(database, "abcdef01" + "0" * 24, "Failed")
    assert listed("abcdef01", phase="Failed") == ["abcdef01" + "0" * 24]


@pytest.mark.parametrize(
    ("params", "name"),
    [
        pytest.param({"id_prefix": ""}, "id_prefix", id="id-prefix-empty"),
        pytest.param({"id_prefix": "a" * 65}, "id_prefix", id="id-prefix-too-long"),
        pytest.param({"limit": 0}, "limit", id="limit-0"),
        pytest.param({"limit": 501}, "limit", id="limit-501"),
        pytest.param({"limit": "ten"}, "limit", id="limit-word"),
        pytest.param({"cursor": "not-a-cursor"}, "cursor", id="cursor-word"),
        pytest.param({"cursor": "-1"}, "cursor", id="cursor-negative"),
        pytest.param({"cursor": "9" * 40}, "cursor", id="cursor-huge"),
        pytest.param({"phase": "Bogus"}, "phase", id="phase-unknown"),
    ],
)
def test_bad_list_parameters_are_422(client: TestClient, params: dict[str, Any], name: str) -> None:
    submit(client)

    response = client.get("/tasks", params=params)

    assert response.status_code == 422, response.text
    assert ["query", name] in locs(response)


def test_limit_500_is_allowed(client: TestClient) -> None:
    submit(client)

    response = client.get("/tasks", params={"limit": 500})

    assert response.status_code == 200
    assert len(response.json()["items"]) == 1


# --- cancel -------------------------------------------------------------------------------


def test_cancel_pending_task_records_the_request(client: TestClient) -> None:
    created = submit(client)

    response = client.delete(f"/tasks/{created['id']}")

    assert response.status_code == 202, response.text
    task = response.json()
    assert task["status"]["cancel_requested"] is True
    assert task["resource_version"] > created["resource_version"]
    assert client.get(f"/tasks/{created['id']}").json()["status"]["cancel_requested"] is True


def test_cancel_twice_is_accepted_and_changes_nothing_more(client: TestClient) -> None:
    created = submit(client)
    first = client.delete(f"/tasks/{created['id']}").json()

    response = client.delete(f"/tasks/{created['id']}")

    assert response.status_code == 202
    assert response.json()["resource_version"] == first["resource_version"]


@pytest.mark.parametrize("phase", ["Succeeded", "Failed", "TimedOut", "Cancelled"])
def test_cancel_terminal_task_is_409(client: TestClient, database: Database, phase: str) -> None:
    created = submit(client)
    set_phase(database, created["id"], phase)

    response = client.delete(f"/tasks/{created['id']}")

    assert response.status_code == 409, response.text
    assert "detail" in response.json()
    assert client.get(f"/tasks/{created['id']}").json()["status"]["cancel_requested"] is False


def test_cancel_unknown_task_is_404(client: TestClient) -> None:
    response = client.delete("/tasks/nope")

    assert response.status_code == 404
    assert "detail" in response.json()


# --- events -------------------------------------------------------------------------------


def test_new_task_has_one_created_event(client: TestClient) -> None:
    created = submit(client)

    response = client.get(f"/tasks/{created['id']}/events")

    assert response.status_code == 200
    items = response.json()["items"]
    assert len(items) == 1
    event = items[0]
    assert event["task_id"] == created["id"]
    assert event["from_phase"] is None
    assert event["to_phase"] == "Pending"
    assert event["reason"] == "Created"
    assert isinstance(event["seq"], int)
    assert event["at"].endswith("Z")


def test_events_belong_to_their_task_only(client: TestClient) -> None:
    first = submit(client)
    second = submit(client)

    a = client.get(f"/tasks/{first['id']}/events").json()["items"]
    b = client.get(f"/tasks/{second['id']}/events").json()["items"]

    assert [e["task_id"] for e in a] == [first["id"]]
    assert [e["task_id"] for e in b] == [second["id"]]
    assert b[0]["seq"] > a[0]["seq"]


def test_events_come_oldest_first(client: TestClient, database: Database) -> None:
    created = submit(client)
    with database.write() as session:
        session.add(
            Transition(
                task_id=created["id"],
                from_phase="Pending",
                to_phase="Scheduled",
                reason="Scheduled",
                message="placed",
                resource_version=2,
            )
        )
        session.commit()

    items = client.get(f"/tasks/{created['id']}/events").json()["items"]

    assert [e["to_phase"] for e in items] == ["Pending", "Scheduled"]
    assert items[0]["seq"] < items[1]["seq"]


def test_events_of_unknown_task_is_404(client: TestClient) -> None:
    assert client.get("/tasks/nope/events").status_code == 404


# --- wait ---------------------------------------------------------------------------------


def test_submit_with_wait_returns_pending_task_when_nothing_runs_it(
    client: TestClient,
) -> None:
    started = time.monotonic()
    response = client.post("/tasks", params={"wait": 1}, json=body())
    elapsed = time.monotonic() - started

    assert response.status_code == 201, response.text
    assert response.json()["status"]["phase"] == "Pending"
    assert response.headers["location"] == f"/tasks/{response.json()['id']}"
    assert 0.9 <= elapsed < 5


def test_get_with_wait_returns_as_soon_as_task_is_terminal(
    client: TestClient, database: Database
) -> None:
    created = submit(client)
    set_phase(database, created["id"], "Succeeded")

    started = time.monotonic()
    response = client.get(f"/tasks/{created['id']}", params={"wait": 30})

    assert response.status_code == 200
    assert response.json()["status"]["phase"] == "Succeeded"
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("wait", [61, -1, "soon"])
def test_submit_with_bad_wait_is_422_and_stores_nothing(
    client: TestClient, database: Database, wait: Any
) -> None:
    response = client.post("/tasks", params={"wait": wait}, json=body())

    assert response.status_code == 422, response.text
    assert ["query", "wait"] in locs(response)
    assert task_count(database) == 0


def test_get_with_wait_61_is_422(client: TestClient) -> None:
    created = submit(client)

    response = client.get(f"/tasks/{created['id']}", params={"wait": 61})

    assert response.status_code == 422


# --- health -------------------------------------------------------------------------------


def test_health_is_degraded_before_the_controller_reports(client: TestClient) -> None:
    response = client.get("/healthz")

    assert response.status_code == 200
    health = response.json()
    assert health["status"] == "degraded"
    assert health["checks"]["database"]["ok"] is True
    assert health["checks"]["controller"]["ok"] is False


def test_health_is_ok_with_fresh_heartbeat_and_working_runtime(
    client: TestClient, database: Database
) -> None:
    add_capacity(database)

    response = client.get("/healthz")

    assert response.status_code == 200
    health = response.json()
    assert health["status"] == "ok"
    assert health["checks"]["controller"]["ok"] is True
    assert health["checks"]["runtime"]["ok"] is True


def test_health_is_degraded_and_explains_when_runtime_is_down(
    client: TestClient, database: Database
) -> None:
    add_capacity(
        database,
        runtime_ok=False,
        runtime_message="cannot reach the Docker engine at /var/run/docker.sock",
    )

    health = client.get("/healthz").json()

    assert health["status"] == "degraded"
    assert health["checks"]["runtime"]["ok"] is False
    assert "/var/run/docker.sock" in health["checks"]["runtime"]["message"]


def test_health_is_degraded_when_heartbeat_is_stale(client: TestClient, database: Database) -> None:
    add_capacity(database)
    with database.write() as session:
        row = session.get(Capacity, "local")
        assert row is not None
        row.heartbeat_at = utcnow().replace(year=utcnow().year - 1)
        session.add(row)
        session.commit()

    health = client.get("/healthz").json()

    assert health["status"] == "degraded"
    assert health["checks"]["controller"]["ok"] is False
