"""What every request passes before a route sees it (`api.guard`), through the real app over a
real SQLite file: the Host and Origin of open mode, the dashboard's security headers, callers
refused before their body is read, and bodies bounded as they arrive. The same probes against
a real server process, through its sockets, are in tests/e2e/test_http_guard.py.
"""

import asyncio
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from live_server import serving
from starlette.testclient import WebSocketDenialResponse

from api.app import create_app, max_body_bytes
from models.database import Database, open_database
from models.settings import Settings

ADMIN = "admin-secret"
MAX_CODE_BYTES = 64 * 1024
LIMIT = max_body_bytes(Settings(max_code_bytes=MAX_CODE_BYTES, max_files_bytes=0))
TASK = {
    "task_type": "execute_code",
    "code": "print(1)",
    "resources": {"cpu": "1", "gpu": "0", "ram": "64MB", "storage": "16MB"},
}


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    db = open_database(database_url)
    yield db
    db.dispose()


def settings(tmp_path: Path, **values: Any) -> Settings:
    return Settings(
        data_dir=tmp_path,
        admin_token=ADMIN,
        max_code_bytes=MAX_CODE_BYTES,
        max_files_bytes=0,
        **values,
    )


def client(tmp_path: Path, database: Database, **values: Any) -> TestClient:
    return TestClient(
        create_app(settings(tmp_path, **values), database), base_url="http://127.0.0.1"
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def new_user(test_client: TestClient, name: str = "alice") -> str:
    response = test_client.post("/admin/tokens", json={"name": name}, headers=bearer(ADMIN))
    assert response.status_code == 201, response.text
    token: str = response.json()["token"]
    return token


# --- Host and Origin in open mode -------------------------------------------------------------


@pytest.mark.parametrize(
    "host, served",
    [
        ("127.0.0.1:8000", True),
        ("127.0.0.1", True),
        ("localhost", True),
        ("LOCALHOST:8000", True),
        ("localhost.:8000", False),
        ("[::1]:8000", True),
        ("[::1]", True),
        ("127.200.0.9:80", True),
        ("allowed.test:8000", True),
        ("ALLOWED.test", True),
        ("evil.example", False),
        ("evil.example:8000", False),
        ("127.0.0.1.evil.example", False),
        ("localhost.evil.example", False),
        ("0.0.0.0:8000", False),
        ("[::2]:8000", False),
        ("10.1.2.3", False),
        ("[::ffff:7f00:1]:8000", False),
    ],
)
def test_open_mode_serves_only_loopback_names_and_the_allowed_hosts(
    tmp_path: Path, database: Database, host: str, served: bool
) -> None:
    with client(tmp_path, database, allowed_hosts="allowed.test") as test_client:
        response = test_client.get("/tasks", headers={"Host": host})
    if served:
        assert response.status_code == 200, response.text
    else:
        assert response.status_code == 400
        detail = response.json()["detail"]
        assert f"Host {host} is refused" in detail
        assert "TASKYARD_ALLOWED_HOSTS" in detail


def test_an_asterisk_serves_any_host(tmp_path: Path, database: Database) -> None:
    with client(tmp_path, database, allowed_hosts="*") as test_client:
        response = test_client.get("/tasks", headers={"Host": "evil.example"})
    assert response.status_code == 200


def test_once_tokens_are_needed_any_host_is_served(tmp_path: Path, database: Database) -> None:
    with client(tmp_path, database) as test_client:
        alice = new_user(test_client)
        foreign = {"Host": "taskyard.example.org", "Origin": "https://elsewhere.example"}
        assert test_client.get("/tasks", headers=foreign | bearer(alice)).status_code == 200
        # Without a token, it is the token that is missing, not the name.
        assert test_client.get("/tasks", headers=foreign).status_code == 401


@pytest.mark.parametrize(
    "origin, served",
    [
        ("http://127.0.0.1:8000", True),
        ("http://localhost:3000", True),
        ("http://[::1]", True),
        ("https://allowed.test", True),
        ("http://evil.example", False),
        ("http://127.0.0.1.evil.example", False),
        ("null", False),
    ],
)
def test_open_mode_refuses_requests_from_pages_elsewhere(
    tmp_path: Path, database: Database, origin: str, served: bool
) -> None:
    with client(tmp_path, database, allowed_hosts="allowed.test") as test_client:
        response = test_client.post("/tasks", json=TASK, headers={"Origin": origin})
    assert response.status_code == (201 if served else 403), response.text
    if not served:
        assert origin in response.json()["detail"]


def test_open_mode_refuses_a_websocket_from_a_page_elsewhere(
    tmp_path: Path, database: Database
) -> None:
    url = "ws://127.0.0.1:8000/tasks/x/attach"
    with client(tmp_path, database) as test_client:
        with (
            pytest.raises(WebSocketDenialResponse) as refused,
            test_client.websocket_connect(url, headers={"Origin": "http://evil.example"}),
        ):
            pass
        assert refused.value.status_code == 403
        assert "TASKYARD_ALLOWED_HOSTS" in refused.value.json()["detail"]
        with test_client.websocket_connect(url, headers={"Origin": "http://127.0.0.1:8000"}) as ws:
            assert "not found" in ws.receive_json()["message"]


# --- the dashboard's security headers ---------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/", "/static/app.js", "/static/app.css", "/static/js/capacity.js"]
)
def test_the_dashboard_allows_only_its_own_origin_and_no_framing(
    tmp_path: Path, database: Database, path: str
) -> None:
    with client(tmp_path, database) as test_client:
        response = test_client.get(path)
    assert response.status_code == 200
    policy = dict(
        part.strip().split(" ", 1)
        for part in response.headers["Content-Security-Policy"].split(";")
    )
    assert policy["default-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"
    assert "'unsafe-inline'" not in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"


def _directives(policy: str) -> dict[str, str]:
    return dict(part.strip().split(" ", 1) for part in policy.split(";"))


def test_the_pages_meta_policy_is_the_headers_and_allows_no_blob_urls(
    tmp_path: Path, database: Database
) -> None:
    # A blob: URL is this origin: an SVG collected from a task and opened from one would run
    # its script here. The page shows collected images from data: URLs (an opaque origin).
    with client(tmp_path, database) as test_client:
        response = test_client.get("/")
    policy = response.headers["Content-Security-Policy"]
    assert "blob:" not in policy
    header = _directives(policy)
    assert header["img-src"] == "'self' data:"
    meta = re.search(r'http-equiv="Content-Security-Policy"\s+content="([^"]+)"', response.text)
    assert meta is not None
    # A <meta> policy cannot say frame-ancestors; every other directive is the header's.
    header.pop("frame-ancestors")
    assert _directives(meta.group(1)) == header


def test_the_dashboard_page_has_no_inline_script_or_style() -> None:
    page = (Path(__file__).parents[2] / "api" / "static" / "index.html").read_text()
    assert "<style" not in page and " style=" not in page
    assert page.count("<script") == page.count('<script type="module" src=')


# --- the caller before the body, and every body bounded ---------------------------------------


class Exchange:
    """One request sent to the app as an ASGI server would, with `body`, or else 64 KiB
    pieces up to 16 times the limit: how much of it the app read, and what it answered."""

    def __init__(
        self,
        app: FastAPI,
        method: str,
        path: str,
        headers: dict[str, str],
        body: bytes | None = None,
    ) -> None:
        self.read = 0
        self.status = 0
        self.answer = b""
        path, _, query = path.partition("?")
        self.scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query.encode(),
            "root_path": "",
            "headers": [(b"host", b"127.0.0.1:8000"), (b"content-type", b"application/json")]
            + [(k.lower().encode(), v.encode()) for k, v in headers.items()],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
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
        return {
            "type": "http.request",
            "body": b" " * 64 * 1024,
            "more_body": self.read < 16 * LIMIT,
        }

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


@pytest.mark.parametrize(
    "path, token, status",
    [
        pytest.param("/tasks", None, 401, id="submit-without-token"),
        pytest.param("/tasks", "ty_unknown", 401, id="submit-with-unknown-token"),
        pytest.param("/tasks?wait=5", "ty_unknown", 401, id="submit-route-with-unknown-token"),
        pytest.param("/admin/tokens", None, 401, id="admin-without-token"),
        pytest.param("/admin/tokens", "user", 403, id="admin-with-user-token"),
        pytest.param("/admin/tasks/x/reset", "user", 403, id="reset-with-user-token"),
    ],
)
def test_a_refused_caller_is_answered_without_a_byte_of_its_body_read(
    users_app: tuple[FastAPI, str], path: str, token: str | None, status: int
) -> None:
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
    exchange = Exchange(
        app, "POST", "/tasks", {"Content-Length": str(len(body))} | bearer(user), body=body
    )
    assert exchange.status == 201, exchange.answer
    assert exchange.read == len(body)


@pytest.mark.parametrize(
    "framing",
    [
        pytest.param({"Transfer-Encoding": "chunked"}, id="chunked"),
        pytest.param({}, id="no-length-as-http2-may"),
        pytest.param({"Content-Length": "100"}, id="understated-length"),
    ],
)
@pytest.mark.parametrize(
    "path",
    [
        "/tasks",
        "/tasks?wait=1",
        "/admin/tokens",
        "/admin/tasks/x/reset",
        "/healthz",
        "/no-such-path",
    ],
)
def test_a_body_is_refused_as_it_passes_the_limit_whatever_its_headers_say(
    users_app: tuple[FastAPI, str], framing: dict[str, str], path: str
) -> None:
    exchange = Exchange(users_app[0], "POST", path, framing | bearer(ADMIN))
    if exchange.read == 0:  # a route that reads no body has nothing to bound
        assert exchange.status in (404, 405), exchange.answer
        return
    assert exchange.status == 413, exchange.answer
    assert str(LIMIT).encode() in exchange.answer
    assert exchange.read <= LIMIT + 64 * 1024


def test_a_content_length_over_the_limit_is_refused_before_reading(
    users_app: tuple[FastAPI, str],
) -> None:
    exchange = Exchange(
        users_app[0], "POST", "/tasks", {"Content-Length": str(LIMIT + 1)} | bearer(ADMIN)
    )
    assert exchange.status == 413
    assert exchange.read == 0


def test_both_content_length_and_transfer_encoding_are_refused(
    users_app: tuple[FastAPI, str],
) -> None:
    exchange = Exchange(
        users_app[0],
        "POST",
        "/tasks",
        {"Content-Length": "10", "Transfer-Encoding": "chunked"} | bearer(ADMIN),
    )
    assert exchange.status == 400
    assert exchange.read == 0
    assert b"Transfer-Encoding" in exchange.answer


# --- open streams of callers no longer allowed ------------------------------------------------


def test_an_open_mode_watch_ends_when_the_first_token_ends_open_mode(
    tmp_path: Path, database: Database
) -> None:
    with (
        serving(settings(tmp_path, watch_heartbeat_seconds=0.2), database) as url,
        httpx.Client(base_url=url, timeout=10) as http,
        http.stream("GET", "/watch") as watch,
    ):
        assert watch.status_code == 200
        lines = watch.iter_lines()
        assert next(lines).startswith(":")
        assert (
            http.post("/admin/tokens", json={"name": "first"}, headers=bearer(ADMIN)).status_code
            == 201
        )
        created = time.monotonic()
        for _ in lines:  # heartbeats, until the server ends the stream
            assert time.monotonic() - created < 3, "the watch is still open"
        assert time.monotonic() - created < 2.5
        assert http.get("/watch").status_code == 401
