"""`taskyard logs [-f] ID` and `taskyard submit --follow` in-process against fake servers: what
they ask for, what they print where, how they resume a dropped stream, and their exit codes."""

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cli_support import make_task, run_cli


@pytest.fixture(autouse=True)
def _no_stray_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("TASKYARD_SERVER", "TASKYARD_TOKEN", "TASKYARD_ADMIN_TOKEN", "TASKYARD_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))


class Stream(httpx.SyncByteStream):
    """A response body sent in pieces, then cut off with `then` (a dropped connection)."""

    def __init__(self, *pieces: str, then: BaseException | None = None) -> None:
        self._pieces, self._then = pieces, then

    def __iter__(self) -> Iterator[bytes]:
        for piece in self._pieces:
            yield piece.encode()
        if self._then is not None:
            raise self._then


def output(seq: int | None, text: str, stream: str = "stdout") -> str:
    data = {"seq": seq, "stream": stream, "text": text, "at": "2026-11-27T22:00:00.5Z"}
    head = f"id: {seq}\n" if seq is not None else ""
    return f"{head}event: output\ndata: {json.dumps(data)}\n\n"


def end(phase: str = "Succeeded", reason: str = "Completed", exit_code: int | None = 0) -> str:
    data = {
        "phase": phase,
        "reason": reason,
        "exit_code": exit_code,
        "stdout_truncated": False,
        "stderr_truncated": False,
    }
    return f"event: end\ndata: {json.dumps(data)}\n\n"


def sse(*frames: str) -> httpx.Response:
    return httpx.Response(
        200, headers={"content-type": "text/event-stream"}, stream=Stream(*frames)
    )


class Server:
    """A fake server: GET /tasks/{id}/logs answers from `logs` (one answer per request, the
    last one repeated), other routes from `routes`; every request is kept."""

    def __init__(
        self,
        logs: list[Callable[[httpx.Request], httpx.Response]],
        routes: dict[tuple[str, str], Any] | None = None,
    ) -> None:
        self.logs = logs
        self.routes = routes or {}
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path.endswith("/logs"):
            count = sum(1 for r in self.requests if r.url.path.endswith("/logs"))
            return self.logs[min(count, len(self.logs)) - 1](request)
        status, body = self.routes[(request.method, request.url.path)]
        return httpx.Response(status, json=body)

    def log_requests(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path.endswith("/logs")]


def answer(*frames: str) -> Callable[[httpx.Request], httpx.Response]:
    return lambda _request: sse(*frames)


# --- taskyard logs ID -------------------------------------------------------------------------


def test_logs_prints_each_stream_to_its_own_place_and_exits_0() -> None:
    server = Server(
        [
            answer(
                output(1, "line 1\n"),
                output(2, "warning\n", "stderr"),
                ": keepalive\n\n",
                output(3, "line 2\n"),
                end(),
            )
        ]
    )

    result = run_cli(["logs", "abc"], server)

    assert result.code == 0
    assert result.out == "line 1\nline 2\n"
    assert result.err == "warning\n"
    [request] = server.log_requests()
    assert request.url.path == "/tasks/abc/logs"
    assert request.url.params["follow"] == "false"
    assert "Last-Event-ID" not in request.headers


def test_logs_of_a_running_task_prints_what_exists_and_returns() -> None:
    server = Server([answer(output(1, "so far\n"))])  # no end: the task still runs

    result = run_cli(["logs", "abc"], server)

    assert result.code == 0
    assert result.out == "so far\n"
    assert len(server.log_requests()) == 1


def test_logs_of_a_compacted_task_prints_its_final_output() -> None:
    server = Server(
        [
            answer(
                output(None, "kept\n"),
                output(None, "oops\n", "stderr"),
                end("Failed", "NonZeroExit", 1),
            )
        ],
        {
            ("GET", "/tasks/abc"): (
                200,
                make_task("abc", "Failed", reason="NonZeroExit", message="exited with code 1"),
            )
        },
    )

    result = run_cli(["logs", "abc"], server)

    assert result.out == "kept\n"
    assert result.err.startswith("oops\n")


def test_logs_stream_flag_asks_for_one_stream() -> None:
    server = Server([answer(output(2, "warning\n", "stderr"), end())])

    result = run_cli(["logs", "abc", "--stream", "stderr"], server)

    assert result.code == 0 and result.err == "warning\n" and result.out == ""
    assert server.log_requests()[0].url.params["stream"] == "stderr"


def test_logs_of_an_unknown_task_exits_1_with_the_servers_detail() -> None:
    server = Server([lambda _r: httpx.Response(404, json={"detail": "task nope not found"})])

    result = run_cli(["logs", "nope"], server)

    assert result.code == 1
    assert "task nope not found" in result.err
    assert result.out == ""


def test_logs_rejects_an_unknown_stream_as_usage(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        run_cli(["logs", "abc", "--stream", "stdin"], Server([answer(end())]))
    assert exited.value.code == 2
    assert "stdin" in capsys.readouterr().err


# --- taskyard logs -f ID ----------------------------------------------------------------------


def test_follow_exits_0_when_the_task_succeeds() -> None:
    server = Server([answer(output(1, "0\n"), ": keepalive\n\n", output(2, "1\n"), end())])

    result = run_cli(["logs", "-f", "abc"], server)

    assert result.code == 0
    assert result.out == "0\n1\n"
    assert server.log_requests()[0].url.params["follow"] == "true"


@pytest.mark.parametrize(
    ("phase", "reason", "message"),
    [
        ("Failed", "NonZeroExit", "exited with code 1"),
        ("TimedOut", "DeadlineExceeded", "exceeded its 2 s timeout and was killed"),
        ("Cancelled", "Cancelled", "cancelled on request"),
    ],
)
def test_follow_exits_1_with_the_reason_when_the_task_does_not_succeed(
    phase: str, reason: str, message: str
) -> None:
    task = make_task("abc", phase, reason=reason, message=message)
    server = Server(
        [answer(output(1, "partial\n"), output(2, "boom\n", "stderr"), end(phase, reason, 1))],
        {("GET", "/tasks/abc"): (200, task)},
    )

    result = run_cli(["logs", "-f", "abc"], server)

    assert result.code == 1
    assert result.out == "partial\n"
    lines = result.err.splitlines()
    assert lines[0] == "boom"
    assert f"error: task/abc {phase} ({reason}): {message}" in lines[1:]


def test_follow_resumes_a_dropped_stream_after_the_last_chunk_it_printed() -> None:
    def first(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            stream=Stream(
                output(1, "a\n"), output(2, "b\n"), then=httpx.ReadError("connection reset")
            ),
        )

    def again(request: httpx.Request) -> httpx.Response:
        assert request.headers["Last-Event-ID"] == "2"
        return sse(output(3, "c\n"), end())

    server = Server([first, again])

    result = run_cli(["logs", "-f", "abc"], server)

    assert result.code == 0
    assert result.out == "a\nb\nc\n"
    assert len(server.log_requests()) == 2


def test_follow_resumes_when_the_server_closes_before_the_end() -> None:
    def again(request: httpx.Request) -> httpx.Response:
        assert request.headers["Last-Event-ID"] == "1"
        return sse(output(2, "after a restart\n"), end())

    server = Server([answer(output(1, "before\n")), again])

    result = run_cli(["logs", "-f", "abc"], server)

    assert result.code == 0
    assert result.out == "before\nafter a restart\n"


def test_follow_gives_up_after_repeated_failures_and_says_so() -> None:
    def broken(_request: httpx.Request) -> httpx.Response:
        raise httpx.ReadError("connection reset")

    server = Server([answer(output(1, "once\n")), broken])

    result = run_cli(["logs", "-f", "abc"], server)

    assert result.code == 3
    assert result.out == "once\n"
    assert "lost the log stream of task abc" in result.err


# --- taskyard submit --follow -----------------------------------------------------------------


def test_submit_follow_prints_the_output_live_and_exits_0() -> None:
    server = Server(
        [answer(output(1, "0\n"), output(2, "1\n"), output(3, "2\n"), end())],
        {("POST", "/tasks"): (201, make_task("abc"))},
    )

    result = run_cli(["submit", "-c", "print(1)", "--follow"], server)

    assert result.code == 0
    assert result.out == "0\n1\n2\n"
    assert "task/abc created" in result.err
    [request] = server.log_requests()
    assert request.url.path == "/tasks/abc/logs"
    assert request.url.params["follow"] == "true"


def test_submit_follow_exits_1_when_the_task_fails() -> None:
    task = make_task("abc", "Failed", reason="NonZeroExit", message="exited with code 2")
    server = Server(
        [answer(output(1, "partial\n"), end("Failed", "NonZeroExit", 2))],
        {("POST", "/tasks"): (201, make_task("abc")), ("GET", "/tasks/abc"): (200, task)},
    )

    result = run_cli(["submit", "-c", "x", "--follow"], server)

    assert result.code == 1
    assert result.out == "partial\n"
    assert "error: task/abc Failed (NonZeroExit): exited with code 2" in result.err
