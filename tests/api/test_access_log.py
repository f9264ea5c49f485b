"""The service's log, read from a real `taskyard api` process (no engine needed): one access
line per request with method, path, status, milliseconds and the caller's token id (never the
token, never the query string), uvicorn's own access lines gone, and the JSON format parsing
line by line."""

import json
import logging
import re
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))

from harness import Server

from api.app import create_app
from models.database import Database, open_database
from models.settings import Settings

SMALL = {"cpu": "1", "gpu": "0", "ram": "64MB", "storage": "100MB"}
BODY = {"task_type": "execute_code", "code": "print(1)", "resources": SMALL}


def _exercise(server: Server) -> dict[str, str]:
    """Requests of each kind; returns the user token and its id."""
    url = server.url
    assert httpx.get(f"{url}/healthz").status_code == 200
    assert httpx.post(f"{url}/tasks", json=BODY).status_code == 201  # open mode: no token
    admin = (server.data_dir / "admin-token").read_text().strip()
    created = httpx.post(
        f"{url}/admin/tokens", json={"name": "alice"}, headers={"Authorization": f"Bearer {admin}"}
    ).json()
    user = {"Authorization": f"Bearer {created['token']}"}
    assert httpx.post(f"{url}/tasks", json=BODY, headers=user).status_code == 201
    # A token in the URL is refused (only the Authorization header carries one), and the log
    # never shows the query that held it.
    assert httpx.get(f"{url}/tasks", params={"access_token": created["token"]}).status_code == 401
    assert httpx.get(f"{url}/tasks/nosuchtask", headers=user).status_code == 404
    assert httpx.get(f"{url}/tasks").status_code == 401  # tokens exist now: none given
    return {"token": created["token"], "id": created["id"]}


def _run(tmp_path: Path, log_format: str | None) -> tuple[str, dict[str, str]]:
    env = {"TASKYARD_LOG_FORMAT": log_format} if log_format else {}
    server = Server(tmp_path / "data", verb="api", env=env).start(healthy=False)
    try:
        user = _exercise(server)
    finally:
        server.kill(signal.SIGTERM)
    return server.log.read_text(), user


# (method, path, status, token: "user", "admin" or "-"), in the order _exercise sends them.
EXPECTED = [
    ("GET", "/healthz", 200, "-"),
    ("POST", "/tasks", 201, "-"),
    ("POST", "/admin/tokens", 201, "admin"),
    ("POST", "/tasks", 201, "user"),
    ("GET", "/tasks", 401, "-"),
    ("GET", "/tasks/nosuchtask", 404, "user"),
    ("GET", "/tasks", 401, "-"),
]


def _expected(user_id: str) -> list[tuple[str, str, int, str]]:
    return [(m, p, s, user_id if t == "user" else t) for m, p, s, t in EXPECTED]


def _no_secrets(log: str, user: dict[str, str], data_dir: Path) -> None:
    assert user["token"] not in log
    assert (data_dir / "admin-token").read_text().strip() not in log
    assert "access_token" not in log
    assert "HTTP/1.1" not in log, "uvicorn's own access log is still on"


def test_text_log_has_one_access_line_per_request(tmp_path: Path) -> None:
    log, user = _run(tmp_path, None)
    access = [line for line in log.splitlines() if " taskyard.access: " in line]
    seen = []
    for line in access:
        method, path, status, ms, token = line.split(" taskyard.access: ")[1].split(" ")
        assert ms.endswith("ms") and float(ms[:-2]) >= 0
        seen.append((method, path, int(status), token.removeprefix("token=")))
    # the harness polls /healthz until the server answers: those lines come first
    while seen[:2] and seen[1][1] == "/healthz":
        seen.pop(0)
    assert seen == _expected(user["id"])
    _no_secrets(log, user, tmp_path / "data")


def test_json_log_is_one_object_per_line(tmp_path: Path) -> None:
    log, user = _run(tmp_path, "json")
    records: list[dict[str, Any]] = [json.loads(line) for line in log.splitlines() if line]
    assert all({"time", "level", "logger", "message"} <= r.keys() for r in records)
    # uvicorn's own lines come through the same formatter
    assert any(r["logger"].startswith("uvicorn") for r in records)
    access = [r for r in records if r["logger"] == "taskyard.access"]
    seen = [(r["method"], r["path"], r["status"], r["token_id"]) for r in access]
    while seen[:2] and seen[1][1] == "/healthz":
        seen.pop(0)
    assert seen == _expected(user["id"])
    assert all(isinstance(r["ms"], float) and r["client"] == "127.0.0.1" for r in access)
    _no_secrets(log, user, tmp_path / "data")


@pytest.mark.parametrize("flag", ["--log-format=yaml"], ids=["unknown-format"])
def test_an_unknown_log_format_is_refused(flag: str) -> None:
    from taskyard.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["serve", flag])
    assert exited.value.code == 2


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    db = open_database(database_url)
    yield db
    db.dispose()


def access_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "taskyard.access"]


@pytest.mark.parametrize("enabled", [True, False], ids=["on", "off"])
def test_the_access_log_can_be_turned_off(
    tmp_path: Path, database: Database, caplog: pytest.LogCaptureFixture, enabled: bool
) -> None:
    settings = Settings(data_dir=tmp_path / "data", access_log=enabled)
    with (
        caplog.at_level(logging.INFO, logger="taskyard.access"),
        TestClient(create_app(settings, database), base_url="http://127.0.0.1") as client,
    ):
        assert client.get("/healthz").status_code == 200
    assert len(access_lines(caplog)) == (1 if enabled else 0)


def test_a_websocket_session_is_logged_when_it_ends(
    tmp_path: Path, database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    with (
        caplog.at_level(logging.INFO, logger="taskyard.access"),
        TestClient(create_app(settings, database), base_url="http://127.0.0.1") as client,
        client.websocket_connect("ws://127.0.0.1/tasks/nosuchtask/attach") as ws,
    ):
        assert "not found" in ws.receive_json()["message"]
    (line,) = access_lines(caplog)
    assert re.fullmatch(r"WS /tasks/nosuchtask/attach 101 \d+\.\dms token=-", line)
