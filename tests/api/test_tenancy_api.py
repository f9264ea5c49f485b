"""User tokens and tenants: who may see and touch which task."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from live_server import serving
from sqlalchemy import update
from sqlmodel import col, select

from api.app import create_app
from models.clock import utcnow
from models.database import Database, open_database
from models.phases import Phase
from models.quantities import GIB
from models.settings import Settings
from models.tables import ApiToken, Capacity, Task

BODY = {
    "task_type": "execute_code",
    "code": "print('hi')",
    "resources": {"cpu": "1", "gpu": "0", "ram": "64MB", "storage": "16MB"},
}
ADMIN = "admin-secret"


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = open_database(database_url)
    yield database
    database.dispose()


def make_client(tmp_path: Path, db: Database, **settings: Any) -> TestClient:
    app = create_app(Settings(data_dir=tmp_path, admin_token=ADMIN, **settings), db)
    return TestClient(app, base_url="http://127.0.0.1")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def new_user(client: TestClient, name: str) -> str:
    response = client.post("/admin/tokens", json={"name": name}, headers=bearer(ADMIN))
    assert response.status_code == 201, response.text
    token: str = response.json()["token"]
    assert token.startswith("ty_")
    return token


def test_open_mode_needs_no_token(tmp_path: Path, db: Database) -> None:
    client = make_client(tmp_path, db)
    assert client.post("/tasks", json=BODY).status_code == 201
    assert client.get("/tasks").status_code == 200


def test_beyond_loopback_every_task_endpoint_needs_a_token(tmp_path: Path, db: Database) -> None:
    client = make_client(tmp_path, db, host="0.0.0.0")
    for method, path in (
        ("POST", "/tasks"),
        ("GET", "/tasks"),
        ("GET", "/tasks/x"),
        ("DELETE", "/tasks/x"),
        ("GET", "/tasks/x/events"),
        ("GET", "/tasks/x/logs"),
        ("GET", "/watch"),
        ("GET", "/capacity"),
    ):
        response = client.request(method, path, json=BODY if method == "POST" else None)
        assert response.status_code == 401, (method, path, response.text)
        assert "token" in response.json()["detail"]


def test_the_first_user_token_ends_open_mode(tmp_path: Path, db: Database) -> None:
    client = make_client(tmp_path, db)
    alice = new_user(client, "alice")
    assert client.post("/tasks", json=BODY).status_code == 401
    assert client.post("/tasks", json=BODY, headers=bearer("ty_not-a-token")).status_code == 401
    assert client.post("/tasks", json=BODY, headers=bearer(alice)).status_code == 201
    assert client.post("/tasks", json=BODY, headers=bearer(ADMIN)).status_code == 201


def test_open_mode_comes_back_when_the_last_user_token_is_revoked(
    tmp_path: Path, db: Database
) -> None:
    client = make_client(tmp_path, db)
    alice, bob = new_user(client, "alice"), new_user(client, "bob")
    ids = [t["id"] for t in client.get("/admin/tokens", headers=bearer(ADMIN)).json()["items"]]

    assert client.delete(f"/admin/tokens/{ids[0]}", headers=bearer(ADMIN)).status_code == 200
    assert client.get("/tasks").status_code == 401, "bob's token is still active"
    assert client.get("/tasks", headers=bearer(bob)).status_code == 200

    assert client.delete(f"/admin/tokens/{ids[1]}", headers=bearer(ADMIN)).status_code == 200
    assert client.get("/tasks").status_code == 200
    assert client.post("/tasks", json=BODY).status_code == 201
    # A revoked token stays refused, open mode or not: its holder is told, not let in.
    assert client.get("/tasks", headers=bearer(alice)).status_code == 401

    new_user(client, "carol")
    assert client.get("/tasks").status_code == 401


def test_open_mode_does_not_come_back_beyond_loopback(tmp_path: Path, db: Database) -> None:
    client = make_client(tmp_path, db, host="0.0.0.0", allow_remote=True)
    new_user(client, "alice")
    token_id = client.get("/admin/tokens", headers=bearer(ADMIN)).json()["items"][0]["id"]
    assert client.delete(f"/admin/tokens/{token_id}", headers=bearer(ADMIN)).status_code == 200
    assert client.get("/tasks").status_code == 401


def test_open_mode_can_be_switched_off(tmp_path: Path, db: Database) -> None:
    client = make_client(tmp_path, db, open_mode=False)
    response = client.get("/tasks")
    assert response.status_code == 401
    assert "Authorization: Bearer" in response.json()["detail"]
    assert client.get("/tasks", headers=bearer(ADMIN)).status_code == 200


def test_a_token_in_the_url_is_not_accepted(tmp_path: Path, db: Database) -> None:
    client = make_client(tmp_path, db)
    alice = new_user(client, "alice")
    for method, path in (("GET", "/tasks"), ("POST", "/tasks"), ("GET", "/watch")):
        response = client.request(
            method, path, params={"access_token": alice}, json=BODY if method == "POST" else None
        )
        assert response.status_code == 401, (method, path, response.text)
        assert "Authorization: Bearer" in response.json()["detail"]
    response = client.get("/admin/tokens", params={"access_token": ADMIN})
    assert response.status_code == 401


def test_tokens_are_stored_hashed_and_listed_without_secrets(tmp_path: Path, db: Database) -> None:
    client = make_client(tmp_path, db)
    alice = new_user(client, "alice")
    with db.read() as session:
        rows = list(session.exec(select(ApiToken)))
    assert len(rows) == 1
    assert alice not in repr(rows[0].model_dump())
    listed = client.get("/admin/tokens", headers=bearer(ADMIN)).json()["items"]
    assert [(t["name"], t["token"]) for t in listed] == [("alice", None)]


def test_a_revoked_token_is_refused(tmp_path: Path, db: Database) -> None:
    client = make_client(tmp_path, db)
    alice = new_user(client, "alice")
    token_id = client.get("/admin/tokens", headers=bearer(ADMIN)).json()["items"][0]["id"]
    assert client.delete(f"/admin/tokens/{token_id}", headers=bearer(ADMIN)).status_code == 200
    response = client.get("/tasks", headers=bearer(alice))
    assert response.status_code == 401
    assert "revoked" in response.json()["detail"]


def test_users_cannot_see_or_touch_each_others_tasks(tmp_path: Path, db: Database) -> None:
    client = make_client(tmp_path, db)
    alice, bob = new_user(client, "alice"), new_user(client, "bob")
    task_id = client.post("/tasks", json=BODY, headers=bearer(alice)).json()["id"]

    for method, path in (
        ("GET", f"/tasks/{task_id}"),
        ("DELETE", f"/tasks/{task_id}"),
        ("GET", f"/tasks/{task_id}/events"),
        ("GET", f"/tasks/{task_id}/logs"),
        ("GET", f"/watch?task_id={task_id}"),
    ):
        response = client.request(method, path, headers=bearer(bob))
        assert response.status_code == 404, (method, path, response.text)
    assert client.get("/tasks", headers=bearer(bob)).json()["items"] == []

    mine = client.get("/tasks", headers=bearer(alice)).json()["items"]
    assert [t["id"] for t in mine] == [task_id]
    assert client.get(f"/tasks/{task_id}", headers=bearer(alice)).status_code == 200
    assert client.get(f"/tasks/{task_id}", headers=bearer(ADMIN)).status_code == 200
    everything = client.get("/tasks", headers=bearer(ADMIN)).json()["items"]
    assert [t["id"] for t in everything] == [task_id]


def test_user_tokens_are_not_admin_tokens(tmp_path: Path, db: Database) -> None:
    client = make_client(tmp_path, db)
    alice = new_user(client, "alice")
    for path in ("/admin/capacity", "/admin/tasks/stuck", "/admin/tokens"):
        assert client.get(path, headers=bearer(alice)).status_code == 403


def test_quota_of_unfinished_tasks_answers_429(tmp_path: Path, db: Database) -> None:
    client = make_client(tmp_path, db, user_max_active_tasks=2, user_max_cpus=0)
    alice, bob = new_user(client, "alice"), new_user(client, "bob")
    for _ in range(2):
        assert client.post("/tasks", json=BODY, headers=bearer(alice)).status_code == 201
    response = client.post("/tasks", json=BODY, headers=bearer(alice))
    assert response.status_code == 429
    assert "2 unfinished tasks" in response.json()["detail"]
    # One user's full quota leaves everyone else alone.
    assert client.post("/tasks", json=BODY, headers=bearer(bob)).status_code == 201


def test_quota_of_cpus_answers_429(tmp_path: Path, db: Database) -> None:
    client = make_client(tmp_path, db, user_max_cpus=2)
    alice = new_user(client, "alice")
    assert client.post("/tasks", json=BODY, headers=bearer(alice)).status_code == 201
    two = dict(BODY, resources=dict(BODY["resources"], cpu="2"))
    response = client.post("/tasks", json=two, headers=bearer(alice))
    assert response.status_code == 429
    assert "CPUs" in response.json()["detail"]


def test_another_user_cannot_attach(tmp_path: Path, db: Database) -> None:
    client = make_client(tmp_path, db)
    alice, bob = new_user(client, "alice"), new_user(client, "bob")
    body = dict(BODY, interactive=True)
    task_id = client.post("/tasks", json=body, headers=bearer(alice)).json()["id"]
    with client.websocket_connect(f"/tasks/{task_id}/attach", headers=bearer(bob)) as ws:
        message = ws.receive_json()
    assert message["type"] == "error"
    assert "not found" in message["message"]
    with client.websocket_connect(f"/tasks/{task_id}/attach") as ws:
        message = ws.receive_json()
    assert message["type"] == "error"
    assert "token" in message["message"]


def test_a_users_watch_shows_only_their_own_transitions(tmp_path: Path, db: Database) -> None:
    settings = Settings(data_dir=tmp_path, admin_token=ADMIN, watch_heartbeat_seconds=0.2)
    with serving(settings, db) as url:
        http = httpx.Client(base_url=url, timeout=10)
        alice = http.post("/admin/tokens", json={"name": "alice"}, headers=bearer(ADMIN)).json()[
            "token"
        ]
        bob = http.post("/admin/tokens", json={"name": "bob"}, headers=bearer(ADMIN)).json()[
            "token"
        ]
        theirs = http.post("/tasks", json=BODY, headers=bearer(alice)).json()["id"]
        mine = http.post("/tasks", json=BODY, headers=bearer(bob)).json()["id"]
        seen: list[str] = []
        with http.stream("GET", "/watch", params={"since": 0}, headers=bearer(bob)) as response:
            assert response.status_code == 200
            for line in response.iter_lines():
                if line.startswith("data:"):
                    seen.append(line)
                if line.startswith(": keepalive"):
                    break  # the replay is over and nothing else is coming
        assert len(seen) == 1
        assert mine in seen[0]
        assert theirs not in seen[0]


def test_a_user_sees_which_slots_are_held_but_only_their_own_tasks_ids(
    tmp_path: Path, db: Database
) -> None:
    client = make_client(tmp_path, db)
    alice, bob = new_user(client, "alice"), new_user(client, "bob")
    with db.write() as session:
        session.add(
            Capacity(
                node="local",
                cpus_total=4,
                cpu_ids=[0, 1, 2, 3],
                gpu_ids=[0],
                gpu_names=["fake"],
                gpu_sharing=2,
                ram_total=8 * GIB,
                ram_allocatable=4 * GIB,
                storage_total=20 * GIB,
                storage_allocatable=10 * GIB,
                runtime_ok=True,
                runtime_message="fake engine",
                heartbeat_at=utcnow(),
            )
        )
        session.commit()
    hers = client.post("/tasks", json=BODY, headers=bearer(alice)).json()["id"]
    his = client.post("/tasks", json=BODY, headers=bearer(bob)).json()["id"]
    for task_id, cpus in ((hers, [0, 1]), (his, [2])):
        with db.write() as session:
            session.execute(
                update(Task)
                .where(col(Task.id) == task_id)
                .values(phase=Phase.RUNNING, assigned_cpus=cpus, assigned_gpus=[0])
            )
            session.commit()

    seen_by_bob = client.get("/capacity", headers=bearer(bob)).json()
    assert seen_by_bob["holders"] == {
        "cpus": {"0": [None], "1": [None], "2": [his]},
        "gpus": {"0": [None, his]},
    }
    assert (seen_by_bob["cpu"]["allocated"], seen_by_bob["gpu"]["allocated"]) == (3, 2)
    everything = {"cpus": {"0": [hers], "1": [hers], "2": [his]}, "gpus": {"0": [hers, his]}}
    assert client.get("/capacity", headers=bearer(ADMIN)).json()["holders"] == everything
    assert client.get("/admin/capacity", headers=bearer(ADMIN)).json()["holders"] == everything
    assert client.get("/admin/capacity", headers=bearer(bob)).status_code == 403
