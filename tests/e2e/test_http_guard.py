"""The HTTP edge of a real `taskyard serve` process, probed from outside as an attacker would
(security issue #14), mostly with raw sockets: request framing and body limits, callers
refused before their body is read, slow headers, the Host header in open mode, and revoked
tokens on open streams.
"""

import asyncio
import concurrent.futures
import json
import signal
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import docker
import httpx
import psutil
import pytest
import websockets
from harness import Server, owned_containers

ADMIN = "admin-secret-for-the-guard-tests"
HEADER_TIMEOUT = 1.0
HEARTBEAT = 0.3
# A small code limit makes the body limit small (12 × it + 64 KiB = 832 KiB), so that a body
# refused in time cannot move the server's memory by more than a few MB.
MAX_CODE_BYTES = 64 * 1024
# No files: the body limit of these settings is the code's alone (`api.app.max_body_bytes`).
BODY_LIMIT = 12 * MAX_CODE_BYTES + 64 * 1024
MIB = 1024 * 1024
TASK = {
    "task_type": "execute_code",
    "code": "print(1)",
    "resources": {"cpu": "1", "gpu": "0", "ram": "64MB", "storage": "16MB"},
}


def _start(tmp_path_factory: pytest.TempPathFactory, name: str, **env: str) -> Server:
    return Server(
        tmp_path_factory.mktemp(name),
        env={
            "TASKYARD_ADMIN_TOKEN": ADMIN,
            "TASKYARD_WARM_POOL_SIZE": "0",
            "TASKYARD_HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT),
            "TASKYARD_MAX_CODE_BYTES": str(MAX_CODE_BYTES),
            "TASKYARD_MAX_FILES_BYTES": "0",
            "TASKYARD_WATCH_HEARTBEAT_SECONDS": str(HEARTBEAT),
            **env,
        },
    ).start()


def _stop(server: Server, engine: docker.DockerClient) -> None:
    server.kill(signal.SIGTERM)
    for container in owned_containers(engine, server.owner):
        container.remove(force=True)


@pytest.fixture(scope="module")
def open_server(
    engine: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A server in open mode: no user token, listening on loopback."""
    running = _start(
        tmp_path_factory, "guard-open", TASKYARD_ALLOWED_HOSTS="taskyard.test, other.test"
    )
    yield running
    _stop(running, engine)


@pytest.fixture(scope="module")
def users_server(
    engine: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A server with user tokens: every task endpoint needs one."""
    running = _start(tmp_path_factory, "guard-users")
    new_user(running, "first")
    yield running
    _stop(running, engine)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def new_user(server: Server, name: str) -> tuple[str, str]:
    """A new user token: (its id, its secret)."""
    response = httpx.post(
        server.url + "/admin/tokens", json={"name": name}, headers=bearer(ADMIN), timeout=10
    )
    assert response.status_code == 201, response.text
    return response.json()["id"], response.json()["token"]


# --- raw HTTP ---------------------------------------------------------------------------------


def connect(server: Server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def detail(self) -> str:
        detail: str = json.loads(self.body)["detail"]
        return detail


def parse_answer(raw: bytes) -> Answer:
    head, sep, rest = raw.partition(b"\r\n\r\n")
    assert sep, f"no complete response head in {raw[:300]!r}"
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", len(rest)))
    return Answer(int(status_line.split()[1]), headers, rest[:length])


def read_answer(sock: socket.socket, within: float) -> Answer:
    """One response from `sock`; fails if none is complete within `within` seconds."""
    deadline = time.monotonic() + within
    raw = b""
    while True:
        _, sep, rest = raw.partition(b"\r\n\r\n")
        if sep:
            answer = parse_answer(raw)
            if len(rest) >= int(answer.headers.get("content-length", 0)):
                return answer
        left = deadline - time.monotonic()
        assert left > 0, f"no answer within {within} s; got {raw[:300]!r}"
        sock.settimeout(left)
        try:
            data = sock.recv(65536)
        except TimeoutError:
            continue
        assert data, f"the server closed the connection; got {raw[:300]!r}"
        raw += data


class Reader(threading.Thread):
    """Everything the server sends on a socket, read while the test keeps sending."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(daemon=True)
        self.sock = sock
        self.data = b""
        self.start()

    def run(self) -> None:
        self.sock.settimeout(30)
        try:
            while data := self.sock.recv(65536):
                self.data += data
        except OSError:
            pass  # a reset after the answer: the server closed with our body unread


class PeakRss(threading.Thread):
    """The largest resident set size of a process, sampled every few milliseconds."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.before = self.process.memory_info().rss
        self.peak = self.before
        self._stop_asked = threading.Event()
        self.start()

    def run(self) -> None:
        while not self._stop_asked.wait(0.005):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def stop(self) -> tuple[int, int]:
        """How much the process grew at its peak, and how much of that it still holds."""
        self._stop_asked.set()
        self.join(5)
        now = self.process.memory_info().rss
        return max(self.peak, now) - self.before, now - self.before


def head(path: str, *lines: str) -> bytes:
    return "\r\n".join(
        [
            f"POST {path} HTTP/1.1",
            "Host: 127.0.0.1",
            "Content-Type: application/json",
            *lines,
            "",
            "",
        ]
    ).encode()


# --- request framing and body limits ----------------------------------------------------------


def count_tasks(server: Server) -> int:
    response = httpx.get(server.url + "/tasks", params={"limit": 500}, timeout=10)
    assert response.status_code == 200, response.text
    return len(response.json()["items"])


def test_a_body_with_both_content_length_and_transfer_encoding_is_refused(
    open_server: Server,
) -> None:
    # The two disagree on where the body ends; a proxy in front may pick the other one, which
    # is how requests are smuggled. RFC 9112 §6.1 lets a server refuse such a request.
    stored_before = count_tasks(open_server)
    body = json.dumps(TASK).encode()
    with connect(open_server) as sock:
        sock.sendall(
            head("/tasks", "Content-Length: 4", "Transfer-Encoding: chunked")
            + chunk(body)
            + b"0\r\n\r\n"
        )
        answer = read_answer(sock, within=5)
        sock.settimeout(5)
        closed = sock.recv(1) == b""
    assert answer.status == 400
    assert "Content-Length" in answer.detail and "Transfer-Encoding" in answer.detail
    assert closed, "the connection stayed open after a request whose end is unknown"
    assert count_tasks(open_server) == stored_before


def send_chunked(server: Server, total: int, *lines: str) -> tuple[int, Answer]:
    """POST /tasks a chunked body of `total` bytes, 1 MiB a chunk, while reading the answer;
    returns how much the server took before it stopped us, and its answer."""
    piece = chunk(b"x" * MIB)
    sent = 0
    with connect(server) as sock:
        sock.sendall(head("/tasks", "Transfer-Encoding: chunked", *lines))
        reader = Reader(sock)
        try:
            while sent < total:
                sock.sendall(piece)
                sent += MIB
            sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server answered and closed: what a client of a refused body sees
        reader.join(30)
    return sent, parse_answer(reader.data)


@pytest.mark.parametrize(
    "framing, status",
    [
        pytest.param([], 413, id="chunked"),
        # The probe of issue #14: a Content-Length under the limit got the body past the check.
        pytest.param(["Content-Length: 10"], 400, id="chunked-and-content-length"),
    ],
)
def test_a_large_chunked_body_is_refused_early_and_memory_stays_flat(
    open_server: Server, framing: list[str], status: int
) -> None:
    send_chunked(open_server, MIB)  # a first one, so that nothing is grown for the first time
    peak = PeakRss(open_server.process.pid)  # type: ignore[union-attr]
    sent, answer = send_chunked(open_server, 64 * MIB, *framing)
    grown, held = peak.stop()
    print(
        f"server RSS grew by {grown / MIB:.1f} MiB at its peak, {held / MIB:.1f} MiB held "
        f"after the answer; {sent / MIB:.0f} MiB sent"
    )
    assert answer.status == status, answer
    if status == 413:
        assert str(BODY_LIMIT) in answer.detail
    # Socket buffers hold a few MiB; the rest of the 64 MiB never went out.
    assert sent < 32 * MIB
    assert grown < 8 * MIB, f"the server grew by {grown / MIB:.1f} MiB"


@pytest.mark.parametrize(
    "path, token, status",
    [
        pytest.param("/tasks", None, 401, id="submit-without-token"),
        pytest.param("/tasks", "ty_not-a-token", 401, id="submit-with-unknown-token"),
        pytest.param("/tasks?wait=1", "ty_not-a-token", 401, id="submit-route-with-unknown-token"),
        pytest.param("/admin/tokens", None, 401, id="admin-without-token"),
        pytest.param("/admin/tokens", "user", 403, id="admin-with-user-token"),
    ],
)
def test_a_caller_without_a_valid_token_is_refused_before_its_body_is_read(
    users_server: Server, path: str, token: str | None, status: int
) -> None:
    if token == "user":
        token = new_user(users_server, "someone")[1]
    lines = [f"Content-Length: {BODY_LIMIT}"] + (
        [f"Authorization: Bearer {token}"] if token else []
    )
    with connect(users_server) as sock:
        # Only the first KiB of the body: an answer that waits for the rest never comes.
        sock.sendall(head(path, *lines) + b"{" + b" " * 1023)
        answer = read_answer(sock, within=3)
    assert answer.status == status, answer
    assert "token" in answer.detail


# --- slow headers -----------------------------------------------------------------------------


def closed_within(sock: socket.socket, seconds: float, *, trickle: bool) -> float | None:
    """Seconds until the server closes `sock` (None: still open after `seconds`); with
    `trickle`, one more header byte goes out every 0.2 s meanwhile."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        sock.settimeout(0.2)
        try:
            if sock.recv(1024) == b"":
                return time.monotonic() - started
        except TimeoutError:
            pass
        except OSError:
            return time.monotonic() - started
        if trickle:
            try:
                sock.sendall(b"a")
            except OSError:
                return time.monotonic() - started
    return None


@pytest.mark.parametrize("after_a_response", [False, True], ids=["first-request", "kept-alive"])
@pytest.mark.parametrize("trickle", [False, True], ids=["silent", "trickling"])
def test_a_connection_that_does_not_finish_its_headers_is_closed(
    open_server: Server, after_a_response: bool, trickle: bool
) -> None:
    with connect(open_server) as sock:
        if after_a_response:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert read_answer(sock, within=5).status == 200
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        took = closed_within(sock, HEADER_TIMEOUT + 5, trickle=trickle)
    assert took is not None, "the server still holds the connection"
    assert took < HEADER_TIMEOUT + 1.5


def test_many_slow_connections_are_let_go_while_others_are_served(open_server: Server) -> None:
    slow = [connect(open_server) for _ in range(300)]
    try:
        for sock in slow:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        started = time.monotonic()
        response = httpx.get(open_server.url + "/healthz", timeout=5)
        assert response.status_code == 200
        assert time.monotonic() - started < 2
        deadline = started + HEADER_TIMEOUT + 5
        held = [
            s for s in slow if closed_within(s, deadline - time.monotonic(), trickle=False) is None
        ]
        assert not held, f"{len(held)} of {len(slow)} slow connections are still held"
    finally:
        for sock in slow:
            sock.close()


# --- the Host header in open mode -------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "evil.example",
        "evil.example:{port}",
        "127.0.0.1.evil.example",
        "localhost.evil.example:{port}",
        "10.0.0.1",
        "[::2]:{port}",
    ],
)
@pytest.mark.parametrize("path", ["/tasks", "/"])
def test_open_mode_refuses_a_host_name_a_web_page_could_rebind(
    open_server: Server, host: str, path: str
) -> None:
    response = httpx.get(
        open_server.url + path, timeout=5, headers={"Host": host.format(port=open_server.port)}
    )
    assert response.status_code == 400
    assert "TASKYARD_ALLOWED_HOSTS" in response.json()["detail"]


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1:{port}",
        "127.0.0.1",
        "localhost:{port}",
        "LocalHost",
        "[::1]:{port}",
        "127.4.5.6:{port}",
        "taskyard.test:{port}",
        "other.test",
    ],
)
def test_open_mode_serves_loopback_names_and_the_allowed_hosts(
    open_server: Server, host: str
) -> None:
    response = httpx.get(
        open_server.url + "/tasks", timeout=5, headers={"Host": host.format(port=open_server.port)}
    )
    assert response.status_code == 200, response.text


def attach_refusal(url: str, origin: str | None) -> int | None:
    """The HTTP status a WebSocket handshake is refused with; None where it is accepted."""

    async def handshake() -> int | None:
        try:
            async with websockets.connect(
                url,
                origin=origin,  # type: ignore[arg-type]
                open_timeout=5,
            ):
                return None
        except websockets.InvalidStatus as exc:
            return int(exc.response.status_code)

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, handshake()).result(timeout=20)


def test_open_mode_refuses_a_websocket_from_a_foreign_page(open_server: Server) -> None:
    # A page on any site may open a WebSocket to loopback: its Origin says where it is from.
    url = f"ws://127.0.0.1:{open_server.port}/tasks/no-such-task/attach"
    assert attach_refusal(url, "http://evil.example") == 403
    assert attach_refusal(url, f"http://127.0.0.1:{open_server.port}") is None
    assert attach_refusal(url, None) is None


# --- revoked tokens on open streams -----------------------------------------------------------


@dataclass
class Stream:
    """An open stream read by a thread: when each piece came, and when the stream ended."""

    opened: threading.Event = field(default_factory=threading.Event)
    pieces: list[float] = field(default_factory=list)
    ended_at: float | None = None
    status: int | None = None
    close_code: int | None = None
    close_reason: str = ""
    error: BaseException | None = None
    stop: threading.Event = field(default_factory=threading.Event)

    def wait_open(self) -> None:
        assert self.opened.wait(15), "the stream did not open"
        assert self.error is None and self.status in (200, 101), (self.status, self.error)

    def pieces_after(self, moment: float) -> int:
        return sum(1 for at in self.pieces if at > moment)


def read_sse(url: str, path: str, token: str) -> Stream:
    stream = Stream()

    def run() -> None:
        try:
            with httpx.stream(
                "GET", url + path, headers=bearer(token), timeout=httpx.Timeout(10, read=60)
            ) as response:
                stream.status = response.status_code
                stream.opened.set()
                for _ in response.iter_bytes():
                    stream.pieces.append(time.monotonic())
                    if stream.stop.is_set():
                        return
        except BaseException as exc:
            stream.error = exc
        finally:
            stream.ended_at = time.monotonic()
            stream.opened.set()

    threading.Thread(target=run, daemon=True).start()
    return stream


def read_attach(url: str, token: str) -> Stream:
    stream = Stream()

    async def talk() -> None:
        async with websockets.connect(url, additional_headers=bearer(token), open_timeout=10) as ws:
            stream.status = 101
            stream.opened.set()
            try:
                async for _message in ws:
                    stream.pieces.append(time.monotonic())
            except websockets.ConnectionClosed:
                pass
            stream.close_code = ws.close_code
            stream.close_reason = ws.close_reason or ""

    def run() -> None:
        try:
            asyncio.run(talk())
        except BaseException as exc:
            stream.error = exc
        finally:
            stream.ended_at = time.monotonic()
            stream.opened.set()

    threading.Thread(target=run, daemon=True).start()
    return stream


def revoke_in_the_database(server: Server, token_id: str) -> None:
    """As another API process over the same database does (or anyone with the file)."""
    with sqlite3.connect(server.data_dir / "taskyard.db", timeout=10) as db:
        db.execute(
            "UPDATE api_tokens SET revoked_at = strftime('%Y-%m-%d %H:%M:%f', 'now') WHERE id = ?",
            (token_id,),
        )


@pytest.mark.parametrize("how", ["admin-api", "database"])
def test_revoking_a_token_ends_its_open_streams(users_server: Server, how: str) -> None:
    alice_id, alice = new_user(users_server, "alice")
    _, bob = new_user(users_server, "bob")
    http = httpx.Client(base_url=users_server.url, timeout=10)
    body: dict[str, Any] = dict(TASK, interactive=True, timeout_seconds=60, code="input()")
    response = http.post("/tasks", json=body, headers=bearer(alice))
    assert response.status_code == 201, response.text
    task_id = response.json()["id"]

    alices = {
        "watch": read_sse(users_server.url, "/watch", alice),
        "logs": read_sse(users_server.url, f"/tasks/{task_id}/logs?follow=true", alice),
        "attach": read_attach(f"ws://127.0.0.1:{users_server.port}/tasks/{task_id}/attach", alice),
    }
    bobs_watch = read_sse(users_server.url, "/watch", bob)
    for stream in [*alices.values(), bobs_watch]:
        stream.wait_open()
    time.sleep(0.5)  # the streams are past their set-up
    assert all(stream.ended_at is None for stream in alices.values())

    revoked_at = time.monotonic()
    if how == "admin-api":
        assert http.delete(f"/admin/tokens/{alice_id}", headers=bearer(ADMIN)).status_code == 200
    else:
        revoke_in_the_database(users_server, alice_id)
    deadline = revoked_at + 5
    while time.monotonic() < deadline and any(s.ended_at is None for s in alices.values()):
        time.sleep(0.05)

    took = {
        name: None if s.ended_at is None else round(s.ended_at - revoked_at, 2)
        for name, s in alices.items()
    }
    assert all(t is not None and t < 2.0 for t in took.values()), took
    assert alices["attach"].close_code == 4401, alices["attach"]
    assert "revoked" in alices["attach"].close_reason
    # Bob's watch goes on: it still gets its heartbeats, well after alice's streams ended.
    time.sleep(max(0.0, revoked_at + 3 - time.monotonic()))
    assert bobs_watch.ended_at is None, bobs_watch.error
    assert bobs_watch.pieces_after(revoked_at + 2) > 0
    # And alice cannot open a new one.
    assert http.get("/watch", headers=bearer(alice)).status_code == 401
    bobs_watch.stop.set()
    http.delete(f"/tasks/{task_id}", headers=bearer(ADMIN))
