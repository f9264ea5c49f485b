"""What every request passes before a route sees it (`api.guard`), through the real app over a
real SQLite file: callers refused before their body is read, and bodies bounded as they
arrive. The same probes against a real server process, through its sockets, are in
tests/e2e/test_http_guard.py.
"""

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.app import create_app
from models.database import Database, open_database
from models.settings import Settings

ADMIN = "admin-secret"
MAX_CODE_BYTES = 64 * 1024
LIMIT = 12 * MAX_CODE_BYTES + 64 * 1024  # the body limit of such settings
TASK = {"task_type": "execute_code", "code": "print(1)",
        "resources": {"cpu": "1", "gpu": "0", "ram": "64MB", "storage": "16MB"}}


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    db = open_database("sqlite:///" + str(tmp_path / "t.db"))
    yield db
    db.dispose()


def settings(tmp_path: Path, **values: Any) -> Settings:
    return Settings(data_dir=tmp_path, admin_token=ADMIN, max_code_bytes=MAX_CODE_BYTES,
                    **values)


def client(tmp_path: Path, database: Database, **values: Any) -> TestClient:
    return TestClient(create_app(settings(tmp_path, **values), database),
                      base_url="http://127.0.0.1")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def new_user(test_client: TestClient, name: str = "alice") -> str:
    response = test_client.post("/admin/tokens", json={"name": name}, headers=bearer(ADMIN))
    assert response.status_code == 201, response.text
    token: str = response.json()["token"]
    return token


# --- the caller before the body, and every body bounded ---------------------------------------


class Exchange:
    """One request sent to the app as an ASGI server would, with `body`, or else 64 KiB
    pieces up to 16 times the limit: how much of it the app read, and what it answered."""

    def __init__(self, app: FastAPI, method: str, path: str, headers: dict[str, str],
                 body: bytes | None = None) -> None:
        self.read = 0
        self.status = 0
        self.answer = b""
        path, _, query = path.partition("?")
        self.scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
            "query_string": query.encode(), "root_path": "",
            "headers": [(b"host", b"127.0.0.1:8000"), (b"content-type", b"application/json")]
            + [(k.lower().encode(), v.encode()) for k, v in headers.items()],
            "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
        }
        self._body = body
        asyncio.run(self._run(app))

    async def _receive(self) -> dict[str, Any]:
        if self._body is not None:
            body, self._body = self._body, None
            self.read += len(body)
            return {"type": "http.request", "body": body, "more_body": False}
        if self.status:
            await asyncio.sleep(3600)  # answered: the app waits for a disconnect
        await asyncio.sleep(0)
        self.read += 64 * 1024
        return {"type": "http.request", "body": b" " * 64 * 1024,
                "more_body": self.read < 16 * LIMIT}

    async def _send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        elif message["type"] == "http.response.body":
            self.answer += message.get("body", b"")

    async def _run(self, app: FastAPI) -> None:
        async with asyncio.timeout(20):
            await app(self.scope, self._receive, self._send)  # type: ignore[arg-type]


@pytest.fixture
def users_app(tmp_path: Path, database: Database) -> Iterator[tuple[FastAPI, str]]:
    """An app out of open mode, and a user's token."""
    with client(tmp_path, database) as test_client:
        yield test_client.app, new_user(test_client)  # type: ignore[misc]


@pytest.mark.parametrize("path, token, status", [
    pytest.param("/tasks", None, 401, id="submit-without-token"),
    pytest.param("/tasks", "ty_unknown", 401, id="submit-with-unknown-token"),
    pytest.param("/tasks?wait=5", "ty_unknown", 401, id="submit-route-with-unknown-token"),
    pytest.param("/admin/tokens", None, 401, id="admin-without-token"),
    pytest.param("/admin/tokens", "user", 403, id="admin-with-user-token"),
    pytest.param("/admin/tasks/x/reset", "user", 403, id="reset-with-user-token"),
])
def test_a_refused_caller_is_answered_without_a_byte_of_its_body_read(
        users_app: tuple[FastAPI, str], path: str, token: str | None, status: int) -> None:
    app, user = users_app
    token = user if token == "user" else token
    headers = {"Transfer-Encoding": "chunked"} | (bearer(token) if token else {})
    exchange = Exchange(app, "POST", path, headers)
    assert exchange.status == status, exchange.answer
    assert exchange.read == 0
    assert b"token" in exchange.answer


def test_an_accepted_callers_body_is_read(users_app: tuple[FastAPI, str]) -> None:
    app, user = users_app
    body = json.dumps(TASK).encode()
    exchange = Exchange(app, "POST", "/tasks", {"Content-Length": str(len(body))} | bearer(user),
                        body=body)
    assert exchange.status == 201, exchange.answer
    assert exchange.read == len(body)


@pytest.mark.parametrize("framing", [
    pytest.param({"Transfer-Encoding": "chunked"}, id="chunked"),
    pytest.param({}, id="no-length-as-http2-may"),
    pytest.param({"Content-Length": "100"}, id="understated-length"),
])
@pytest.mark.parametrize("path", ["/tasks", "/tasks?wait=1", "/admin/tokens",
                                  "/admin/tasks/x/reset", "/healthz", "/no-such-path"])
def test_a_body_is_refused_as_it_passes_the_limit_whatever_its_headers_say(
        users_app: tuple[FastAPI, str], framing: dict[str, str], path: str) -> None:
    exchange = Exchange(users_app[0], "POST", path, framing | bearer(ADMIN))
    if exchange.read == 0:  # a route that reads no body has nothing to bound
        assert exchange.status in (404, 405), exchange.answer
        return
    assert exchange.status == 413, exchange.answer
    assert str(LIMIT).encode() in exchange.answer
    assert exchange.read <= LIMIT + 64 * 1024


def test_a_content_length_over_the_limit_is_refused_before_reading(
        users_app: tuple[FastAPI, str]) -> None:
    exchange = Exchange(users_app[0], "POST", "/tasks",
                        {"Content-Length": str(LIMIT + 1)} | bearer(ADMIN))
    assert exchange.status == 413
    assert exchange.read == 0


def test_both_content_length_and_transfer_encoding_are_refused(
        users_app: tuple[FastAPI, str]) -> None:
    exchange = Exchange(users_app[0], "POST", "/tasks", {
        "Content-Length": "10", "Transfer-Encoding": "chunked"} | bearer(ADMIN))
    assert exchange.status == 400
    assert exchange.read == 0
    assert b"Transfer-Encoding" in exchange.answer
