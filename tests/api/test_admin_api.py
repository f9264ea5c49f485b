"""The admin endpoints through the real app over a real SQLite file, with no controller running:
the admin token (where it comes from, 401/403), `GET /admin/capacity`, `GET /admin/tasks/stuck`
and the rules of `POST /admin/tasks/{id}/reset`. The controller's side of a reset is tested in
`tests/controller/test_reset_and_stuck.py`.
"""

import re
import stat
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlmodel import col

from api.app import create_app
from models.clock import utcnow
from models.database import Database, open_database
from models.phases import Phase, Reason
from models.quantities import GIB, MIB
from models.settings import Settings
from models.tables import Capacity, Task, Transition

SMALL = {"cpu": "1", "gpu": "0", "ram": "64MB", "storage": "100MB"}


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    db = open_database(database_url)
    yield db
    db.dispose()


@pytest.fixture
def client(tmp_path: Path, database: Database) -> Iterator[TestClient]:
    with TestClient(
        create_app(Settings(data_dir=tmp_path / "data"), database), base_url="http://127.0.0.1"
    ) as test_client:
        yield test_client


def admin(client: TestClient) -> dict[str, str]:
    token: str = client.app.state.admin_token  # type: ignore[attr-defined]
    return {"Authorization": f"Bearer {token}"}


def submit(client: TestClient, **resources: str) -> str:
    response = client.post(
        "/tasks",
        json={
            "task_type": "execute_code",
            "code": "print(1)",
            "resources": {**SMALL, **resources},
        },
    )
    assert response.status_code == 201, response.text
    task_id: str = response.json()["id"]
    return task_id


def write_task(database: Database, task_id: str, **values: Any) -> None:
    with database.write() as session:
        session.execute(update(Task).where(col(Task.id) == task_id).values(**values))
        session.commit()


def add_capacity(database: Database, *, heartbeat_age: float | None = 0.0) -> None:
    with database.write() as session:
        session.add(
            Capacity(
                node="local",
                cpus_total=4,
                cpu_ids=[0, 1, 2, 3],
                ram_total=8 * GIB,
                ram_allocatable=4 * GIB,
                storage_total=20 * GIB,
                storage_allocatable=10 * GIB,
                runtime_ok=True,
                runtime_message="fake engine",
                heartbeat_at=None
                if heartbeat_age is None
                else utcnow() - timedelta(seconds=heartbeat_age),
            )
        )
        session.commit()


def get_task(client: TestClient, task_id: str) -> dict[str, Any]:
    response = client.get(f"/tasks/{task_id}")
    assert response.status_code == 200
    task: dict[str, Any] = response.json()
    return task


def reset(
    client: TestClient,
    task_id: str,
    to: str | None = "Pending",
    *,
    headers: dict[str, str] | None = None,
) -> Any:
    return client.post(
        f"/admin/tasks/{task_id}/reset",
        json=None if to is None else {"to": to},
        headers=admin(client) if headers is None else headers,
    )


# --- the admin token --------------------------------------------------------------------------

ENDPOINTS = [
    pytest.param("GET", "/admin/capacity", id="capacity"),
    pytest.param("GET", "/admin/tasks/stuck", id="stuck"),
    pytest.param("POST", "/admin/tasks/{id}/reset", id="reset"),
]


@pytest.fixture
def ready(client: TestClient, database: Database) -> str:
    """A capacity row and one Running task, so every admin endpoint can answer 200."""
    add_capacity(database)
    task_id = submit(client)
    write_task(database, task_id, phase=Phase.RUNNING, assigned_cpus=[0])
    return task_id


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_admin_endpoints_without_a_token_are_401(
    client: TestClient, ready: str, method: str, path: str
) -> None:
    response = client.request(method, path.format(id=ready))

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "token" in response.json()["detail"]
    assert get_task(client, ready)["status"]["reset_requested"] is None


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param("Basic YWRtaW46YWRtaW4=", id="basic-scheme"),
        pytest.param("Bearer", id="bearer-without-token"),
        pytest.param("", id="empty"),
    ],
)
def test_admin_endpoints_without_a_bearer_token_are_401(
    client: TestClient, ready: str, method: str, path: str, authorization: str
) -> None:
    response = client.request(
        method, path.format(id=ready), headers={"Authorization": authorization}
    )

    assert response.status_code == 401


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
@pytest.mark.parametrize("token", ["wrong", "x", "admin"])
def test_admin_endpoints_with_a_wrong_token_are_403(
    client: TestClient, ready: str, method: str, path: str, token: str
) -> None:
    response = client.request(
        method, path.format(id=ready), headers={"Authorization": f"Bearer {token}"}
    )

    assert response.status_code == 403
    assert "admin token" in response.json()["detail"]
    assert get_task(client, ready)["status"]["reset_requested"] is None


def test_a_prefix_of_the_admin_token_is_403(client: TestClient, ready: str) -> None:
    token: str = client.app.state.admin_token  # type: ignore[attr-defined]
    for guess in (token[:-1], token + "x", token.upper() if token != token.upper() else "X"):
        response = client.get("/admin/tasks/stuck", headers={"Authorization": f"Bearer {guess}"})
        assert response.status_code == 403


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_admin_endpoints_with_the_admin_token_are_200(
    client: TestClient, ready: str, method: str, path: str
) -> None:
    response = client.request(method, path.format(id=ready), headers=admin(client))

    assert response.status_code == 200, response.text


def test_task_endpoints_stay_open_without_a_token(client: TestClient) -> None:
    task_id = submit(client)
    assert client.get(f"/tasks/{task_id}").status_code == 200
    assert client.get("/tasks").status_code == 200


def test_a_configured_token_is_used_and_no_file_is_written(
    tmp_path: Path, database: Database
) -> None:
    data_dir = tmp_path / "configured"
    app = create_app(Settings(data_dir=data_dir, admin_token="x"), database)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        assert app.state.admin_token == "x"
        assert app.state.admin_token_path is None
        assert (
            client.get("/admin/tasks/stuck", headers={"Authorization": "Bearer x"}).status_code
            == 200
        )
        assert (
            client.get("/admin/tasks/stuck", headers={"Authorization": "Bearer y"}).status_code
            == 403
        )
    assert not (data_dir / "admin-token").exists()


def test_the_environment_variable_sets_the_token(
    tmp_path: Path, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TASKYARD_ADMIN_TOKEN", "from-the-env")
    app = create_app(Settings(data_dir=tmp_path / "env"), database)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        assert (
            client.get(
                "/admin/tasks/stuck", headers={"Authorization": "Bearer from-the-env"}
            ).status_code
            == 200
        )
    assert not (tmp_path / "env" / "admin-token").exists()


def test_a_generated_token_is_stored_0600_and_reused(tmp_path: Path, database: Database) -> None:
    data_dir = tmp_path / "fresh" / "dir"
    first = create_app(Settings(data_dir=data_dir), database)
    path = data_dir / "admin-token"

    assert first.state.admin_token_path == path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token = path.read_text().strip()
    assert token == first.state.admin_token
    assert len(token) >= 32
    written = path.stat().st_mtime_ns

    second = create_app(Settings(data_dir=data_dir), database)

    assert second.state.admin_token == token
    assert path.stat().st_mtime_ns == written
    with TestClient(second, base_url="http://127.0.0.1") as client:
        assert (
            client.get(
                "/admin/tasks/stuck", headers={"Authorization": f"Bearer {token}"}
            ).status_code
            == 200
        )


def test_two_data_dirs_get_different_tokens(tmp_path: Path, database: Database) -> None:
    one = create_app(Settings(data_dir=tmp_path / "one"), database)
    two = create_app(Settings(data_dir=tmp_path / "two"), database)
    assert one.state.admin_token != two.state.admin_token


# --- capacity ---------------------------------------------------------------------------------


def test_capacity_before_the_controller_reports_is_503(client: TestClient) -> None:
    response = client.get("/admin/capacity", headers=admin(client))
    assert response.status_code == 503
    assert "controller" in response.json()["detail"]


def test_capacity_says_who_holds_what(client: TestClient, database: Database) -> None:
    add_capacity(database)
    running = submit(client, cpu="2", ram="512MB", storage="1GB")
    write_task(database, running, phase=Phase.RUNNING, assigned_cpus=[0, 2])
    scheduled = submit(client, ram="256MB")
    write_task(database, scheduled, phase=Phase.SCHEDULED, assigned_cpus=[3])
    pending = submit(client, cpu="4")
    done = submit(client)
    write_task(database, done, phase=Phase.SUCCEEDED, assigned_cpus=[1])

    response = client.get("/admin/capacity", headers=admin(client))

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["cpu"]["allocatable"] == 4
    assert body["cpu"]["allocated"] == 3
    assert body["cpu"]["free"] == 1
    assert body["cpu"]["ids"] == [0, 1, 2, 3]
    assert body["holders"]["cpus"] == {"0": [running], "2": [running], "3": [scheduled]}
    assert body["holders"]["gpus"] == {}
    assert body["gpu"]["allocatable"] == 0
    assert body["gpu"]["free"] == 0
    assert body["ram"] == {
        "allocatable": 4 * GIB,
        "allocated": 768 * MIB,
        "free": 4 * GIB - 768 * MIB,
        "total": 8 * GIB,
    }
    assert body["storage"]["allocated"] == 1 * GIB + 100 * MIB
    assert body["storage"]["free"] == 10 * GIB - body["storage"]["allocated"]
    assert body["reported_at"].endswith("Z")
    held = {task for tasks in body["holders"]["cpus"].values() for task in tasks}
    assert pending not in held and done not in held


# --- stuck ------------------------------------------------------------------------------------


def stuck(client: TestClient) -> dict[str, Any]:
    response = client.get("/admin/tasks/stuck", headers=admin(client))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_nothing_is_stuck_while_the_controller_is_alive(
    client: TestClient, database: Database
) -> None:
    add_capacity(database)
    submit(client)

    body = stuck(client)

    assert body["items"] == []
    assert body["controller"]["ok"] is True
    assert body["controller"]["last_pass_at"].endswith("Z")


def test_recorded_stuck_tasks_are_listed_with_why(client: TestClient, database: Database) -> None:
    add_capacity(database)
    since = utcnow() - timedelta(seconds=40)
    task_id = submit(client)
    write_task(
        database, task_id, phase=Phase.SCHEDULED, stuck_reason="it is stuck", stuck_since=since
    )
    submit(client)
    # A terminal task keeps no place in the list, whatever its record says.
    ended = submit(client)
    write_task(database, ended, phase=Phase.FAILED, stuck_reason="old news", stuck_since=since)

    body = stuck(client)

    assert body["items"] == [
        {
            "task_id": task_id,
            "phase": "Scheduled",
            "why": "it is stuck",
            "since": since.replace(tzinfo=None).isoformat() + "Z",
        }
    ]
    assert get_task(client, task_id)["status"]["stuck"]["why"] == "it is stuck"


@pytest.mark.parametrize(
    "heartbeat_age",
    [pytest.param(60.0, id="stale-heartbeat"), pytest.param(None, id="never-reported")],
)
def test_without_a_controller_every_active_task_is_stuck(
    client: TestClient, database: Database, heartbeat_age: float | None
) -> None:
    add_capacity(database, heartbeat_age=heartbeat_age)
    pending = submit(client)
    running = submit(client)
    write_task(database, running, phase=Phase.RUNNING)
    recorded = submit(client)
    write_task(
        database,
        recorded,
        phase=Phase.SCHEDULED,
        stuck_reason="its own reason",
        stuck_since=utcnow(),
    )
    done = submit(client)
    write_task(database, done, phase=Phase.SUCCEEDED)

    body = stuck(client)

    assert body["controller"]["ok"] is False
    by_id = {item["task_id"]: item for item in body["items"]}
    assert set(by_id) == {pending, running, recorded}
    assert by_id[pending]["phase"] == "Pending"
    assert by_id[running]["phase"] == "Running"
    for task_id in (pending, running):
        assert "no controller is running" in by_id[task_id]["why"]
    if heartbeat_age is None:
        assert "never" in by_id[pending]["why"]
    else:
        # The heartbeat was 60 s old when written; a slow machine adds its own seconds.
        match = re.search(r"the last reconcile pass was (\d+) s ago", by_id[pending]["why"])
        assert match is not None and 60 <= int(match.group(1)) <= 90
        assert by_id[pending]["since"] == body["controller"]["last_pass_at"]


def test_without_a_capacity_row_the_controller_is_not_ok(client: TestClient) -> None:
    task_id = submit(client)

    body = stuck(client)

    assert body["controller"] == {"ok": False, "last_pass_at": None}
    assert [item["task_id"] for item in body["items"]] == [task_id]
    assert "no controller is running" in body["items"][0]["why"]


def test_the_stale_limit_follows_the_setting(tmp_path: Path, database: Database) -> None:
    add_capacity(database, heartbeat_age=5)
    settings = Settings(data_dir=tmp_path / "s", controller_stale_seconds=2)
    with TestClient(create_app(settings, database), base_url="http://127.0.0.1") as client:
        task_id = submit(client)
        body = stuck(client)
    assert body["controller"]["ok"] is False
    assert [item["task_id"] for item in body["items"]] == [task_id]


# --- reset ------------------------------------------------------------------------------------


def test_reset_of_an_unknown_task_is_404(client: TestClient) -> None:
    response = reset(client, "no-such-task")
    assert response.status_code == 404
    assert "no-such-task" in response.json()["detail"]


def test_requeue_of_a_pending_task_is_409_and_says_why(client: TestClient) -> None:
    task_id = submit(client)
    before = get_task(client, task_id)

    response = reset(client, task_id, "Pending")

    assert response.status_code == 409
    assert "already Pending" in response.json()["detail"]
    assert get_task(client, task_id) == before


@pytest.mark.parametrize("phase", ["Succeeded", "Failed", "TimedOut", "Cancelled"])
def test_failing_a_terminal_task_is_409_and_says_why(
    client: TestClient, database: Database, phase: str
) -> None:
    task_id = submit(client)
    write_task(database, task_id, phase=phase)
    before = get_task(client, task_id)

    response = reset(client, task_id, "Failed")

    assert response.status_code == 409
    detail = response.json()["detail"]
    assert phase in detail and "ended" in detail
    assert get_task(client, task_id) == before


@pytest.mark.parametrize(
    ("phase", "to"),
    [
        ("Pending", "Failed"),
        ("Scheduled", "Pending"),
        ("Scheduled", "Failed"),
        ("Running", "Pending"),
        ("Running", "Failed"),
        ("Succeeded", "Pending"),
        ("Failed", "Pending"),
        ("TimedOut", "Pending"),
        ("Cancelled", "Pending"),
    ],
)
def test_a_reset_that_makes_sense_is_recorded(
    client: TestClient, database: Database, phase: str, to: str
) -> None:
    task_id = submit(client)
    write_task(database, task_id, phase=phase)
    before = get_task(client, task_id)

    response = reset(client, task_id, to)

    assert response.status_code == 200, response.text
    task = response.json()
    assert task["id"] == task_id
    assert task["status"]["reset_requested"] == to
    # Only the controller moves the task.
    assert task["status"]["phase"] == phase
    assert task["status"]["attempt"] == before["status"]["attempt"]
    assert task["resource_version"] > before["resource_version"]
    assert get_task(client, task_id) == task


def test_reset_without_a_body_means_pending(client: TestClient, database: Database) -> None:
    task_id = submit(client)
    write_task(database, task_id, phase=Phase.RUNNING)

    response = client.post(f"/admin/tasks/{task_id}/reset", headers=admin(client))

    assert response.status_code == 200, response.text
    assert response.json()["status"]["reset_requested"] == "Pending"


def test_reset_with_an_empty_object_means_pending(client: TestClient, database: Database) -> None:
    task_id = submit(client)
    write_task(database, task_id, phase=Phase.RUNNING)

    response = client.post(f"/admin/tasks/{task_id}/reset", json={}, headers=admin(client))

    assert response.status_code == 200, response.text
    assert response.json()["status"]["reset_requested"] == "Pending"


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"to": "Running"}, id="to-running"),
        pytest.param({"to": "Succeeded"}, id="to-succeeded"),
        pytest.param({"to": "pending"}, id="wrong-case"),
        pytest.param({"to": 1}, id="not-a-string"),
        pytest.param({"to": None}, id="null"),
        pytest.param({"to": "Pending", "force": True}, id="unknown-field"),
    ],
)
def test_a_bad_reset_body_is_422_naming_the_field(
    client: TestClient, database: Database, body: dict[str, Any]
) -> None:
    task_id = submit(client)
    write_task(database, task_id, phase=Phase.RUNNING)

    response = client.post(f"/admin/tasks/{task_id}/reset", json=body, headers=admin(client))

    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail and all(entry["loc"][0] == "body" for entry in detail)
    assert any("to" in entry["loc"] or "force" in entry["loc"] for entry in detail)
    assert get_task(client, task_id)["status"]["reset_requested"] is None


def test_reset_sent_twice_is_idempotent(client: TestClient, database: Database) -> None:
    task_id = submit(client)
    write_task(database, task_id, phase=Phase.RUNNING)
    first = reset(client, task_id, "Pending").json()

    again = reset(client, task_id, "Pending")

    assert again.status_code == 200
    assert again.json() == first
    assert get_task(client, task_id) == first


def test_a_different_reset_while_one_is_pending_is_409(
    client: TestClient, database: Database
) -> None:
    task_id = submit(client)
    write_task(database, task_id, phase=Phase.RUNNING)
    first = reset(client, task_id, "Pending").json()

    response = reset(client, task_id, "Failed")

    assert response.status_code == 409
    assert "Pending" in response.json()["detail"] and "pending" in response.json()["detail"]
    assert get_task(client, task_id) == first


def test_the_same_reset_after_the_controller_carried_it_out_changes_nothing(
    client: TestClient, database: Database
) -> None:
    """The controller failed the task on request; the same request sent again is a no-op."""
    task_id = submit(client)
    with database.write() as session:
        session.execute(
            update(Task)
            .where(col(Task.id) == task_id)
            .values(phase=Phase.FAILED, reason=Reason.ADMIN_RESET, resource_version=3)
        )
        session.add(
            Transition(
                task_id=task_id,
                from_phase=Phase.RUNNING,
                to_phase=Phase.FAILED,
                reason=Reason.ADMIN_RESET,
                message="failed by an admin",
                resource_version=3,
            )
        )
        session.commit()
    before = get_task(client, task_id)

    response = reset(client, task_id, "Failed")

    assert response.status_code == 200, response.text
    assert response.json() == before
    assert get_task(client, task_id) == before


def test_a_requeued_task_still_waiting_accepts_the_same_request_again(
    client: TestClient, database: Database
) -> None:
    task_id = submit(client)
    with database.write() as session:
        session.execute(
            update(Task)
            .where(col(Task.id) == task_id)
            .values(phase=Phase.PENDING, reason=Reason.ADMIN_RESET, attempt=2, resource_version=5)
        )
        session.add(
            Transition(
                task_id=task_id,
                from_phase=Phase.RUNNING,
                to_phase=Phase.PENDING,
                reason=Reason.ADMIN_RESET,
                message="requeued by an admin as attempt 2",
                resource_version=5,
            )
        )
        session.commit()
    before = get_task(client, task_id)

    response = reset(client, task_id, "Pending")

    assert response.status_code == 200, response.text
    assert response.json() == before
    assert get_task(client, task_id)["status"]["reset_requested"] is None


def test_a_reset_for_an_attempt_that_was_already_requeued_is_409(
    client: TestClient, database: Database
) -> None:
    """The first requeue was carried out (attempt 2); the same request sent again, for
    attempt 1, must not requeue a second time."""
    task_id = submit(client)
    with database.write() as session:
        session.execute(
            update(Task)
            .where(col(Task.id) == task_id)
            .values(phase=Phase.RUNNING, attempt=2, resource_version=7)
        )
        session.commit()
    before = get_task(client, task_id)

    response = client.post(
        f"/admin/tasks/{task_id}/reset", json={"to": "Pending", "attempt": 1}, headers=admin(client)
    )

    assert response.status_code == 409, response.text
    assert "attempt 2, not 1" in response.json()["detail"]
    assert get_task(client, task_id) == before


def test_a_reset_for_the_current_attempt_is_recorded(
    client: TestClient, database: Database
) -> None:
    task_id = submit(client)
    with database.write() as session:
        session.execute(update(Task).where(col(Task.id) == task_id).values(phase=Phase.RUNNING))
        session.commit()

    response = client.post(
        f"/admin/tasks/{task_id}/reset", json={"to": "Pending", "attempt": 1}, headers=admin(client)
    )

    assert response.status_code == 200, response.text
    assert response.json()["status"]["reset_requested"] == "Pending"


@pytest.mark.parametrize("attempt", [0, -1, "one", 1.5])
def test_a_bad_attempt_precondition_is_422(client: TestClient, attempt: object) -> None:
    task_id = submit(client)
    response = client.post(
        f"/admin/tasks/{task_id}/reset",
        json={"to": "Pending", "attempt": attempt},
        headers=admin(client),
    )
    assert response.status_code == 422, response.text


def test_a_wrong_token_records_no_reset(client: TestClient, database: Database) -> None:
    task_id = submit(client)
    write_task(database, task_id, phase=Phase.RUNNING)

    response = reset(client, task_id, "Failed", headers={"Authorization": "Bearer nope"})

    assert response.status_code == 403
    assert get_task(client, task_id)["status"]["reset_requested"] is None
