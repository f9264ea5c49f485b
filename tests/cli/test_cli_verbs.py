"""The client verbs in-process against fake servers: what they send, what they print, and their
exit codes (0 ok, 1 the server or the task said no, 2 usage, 3 cannot connect)."""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cli_support import make_task, run_cli
from harness import free_port

from taskyard.cli import main


@pytest.fixture(autouse=True)
def _no_stray_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("TASKYARD_SERVER", "TASKYARD_TOKEN", "TASKYARD_ADMIN_TOKEN", "TASKYARD_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))


class Stream(httpx.SyncByteStream):
    def __init__(self, text: str, then: BaseException | None = None) -> None:
        self._text, self._then = text, then

    def __iter__(self) -> Iterator[bytes]:
        yield self._text.encode()
        if self._then is not None:
            raise self._then


def frame(seq: int, from_phase: str | None, to: str, task: str = "t1") -> str:
    data = {
        "seq": seq,
        "task_id": task,
        "from_phase": from_phase,
        "to_phase": to,
        "reason": "R" + to,
        "message": f"now {to}",
        "at": "2026-11-27T22:00:00.5Z",
        "resource_version": seq,
    }
    return f"id: {seq}\nevent: transition\ndata: {json.dumps(data)}\n\n"


class Recorder:
    """A fake server: answers from a route table and keeps every request."""

    def __init__(self, routes: dict[tuple[str, str], Any]) -> None:
        self.routes = routes
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.routes[(request.method, request.url.path)]
        if callable(answer):
            answer = answer(request)
        if isinstance(answer, httpx.Response):
            return answer
        status, body = answer
        return httpx.Response(status, json=body)

    def bodies(self, method: str, path: str) -> list[Any]:
        return [
            json.loads(r.content)
            for r in self.requests
            if r.method == method and r.url.path == path
        ]


# ---- submit ---------------------------------------------------------------------------------


def test_submit_sends_code_and_resources_as_the_contract_strings() -> None:
    server = Recorder({("POST", "/tasks"): (201, make_task("abc"))})
    result = run_cli(
        [
            "submit",
            "-c",
            "print('hi')",
            "--cpu",
            "2",
            "--gpu",
            "0",
            "--ram",
            "512MB",
            "--storage",
            "1GB",
            "--timeout",
            "5",
        ],
        server,
    )
    assert result.code == 0
    assert result.out == "task/abc created\n"
    assert server.bodies("POST", "/tasks") == [
        {
            "task_type": "execute_code",
            "code": "print('hi')",
            "resources": {"cpu": "2", "gpu": "0", "ram": "512MB", "storage": "1GB"},
            "timeout_seconds": 5,
        }
    ]


def test_submit_defaults() -> None:
    server = Recorder({("POST", "/tasks"): (201, make_task("abc"))})
    assert run_cli(["submit", "-c", "x"], server).code == 0
    body = server.bodies("POST", "/tasks")[0]
    assert body["resources"] == {"cpu": "1", "gpu": "0", "ram": "256MB", "storage": "100MB"}
    assert "timeout_seconds" not in body and "stdin" not in body


@pytest.mark.parametrize(
    ("argv", "stdin", "code"),
    [
        pytest.param(["FILE"], "", "print('from file')\n", id="file"),
        pytest.param(["-"], "print('dash')\n", "print('dash')\n", id="dash-reads-stdin"),
        pytest.param([], "print('piped')\n", "print('piped')\n", id="pipe-without-argument"),
    ],
)
def test_submit_reads_code_from_file_or_stdin(
    tmp_path: Path, argv: list[str], stdin: str, code: str
) -> None:
    source = tmp_path / "snippet.py"
    source.write_text("print('from file')\n")
    server = Recorder({("POST", "/tasks"): (201, make_task("abc"))})
    argv = [str(source) if a == "FILE" else a for a in argv]
    result = run_cli(["submit", *argv], server, stdin=stdin)
    assert result.code == 0, result.err
    assert server.bodies("POST", "/tasks")[0]["code"] == code


def test_submit_stdin_file_becomes_the_tasks_input(tmp_path: Path) -> None:
    given = tmp_path / "input.txt"
    given.write_text("42\n")
    server = Recorder({("POST", "/tasks"): (201, make_task("abc"))})
    result = run_cli(["submit", "-c", "print(input())", "--stdin-file", str(given)], server)
    assert result.code == 0
    assert server.bodies("POST", "/tasks")[0]["stdin"] == "42\n"


@pytest.mark.parametrize(
    ("argv", "tty", "says"),
    [
        pytest.param([], True, "no code", id="nothing-on-a-terminal"),
        pytest.param(["x.py", "-c", "1"], False, "give the code once", id="file-and-c"),
        pytest.param(["/nonexistent/x.py"], False, "cannot read /nonexistent/x.py", id="no-file"),
        pytest.param(
            ["-", "--stdin-file", "-"], False, "stdin cannot carry both", id="stdin-twice"
        ),
    ],
)
def test_submit_usage_errors_exit_2_and_send_nothing(argv: list[str], tty: bool, says: str) -> None:
    server = Recorder({})
    result = run_cli(["submit", *argv], server, tty=tty)
    assert result.code == 2
    assert says in result.err and result.err.startswith("usage: taskyard submit")
    assert server.requests == []


def test_submit_bad_flag_value_is_an_argparse_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["submit", "-c", "x", "--timeout", "soon"])
    assert raised.value.code == 2
    assert "invalid int value: 'soon'" in capsys.readouterr().err


def test_submit_output_json_prints_the_task() -> None:
    task = make_task("abc")
    result = run_cli(
        ["submit", "-c", "x", "-o", "json"], Recorder({("POST", "/tasks"): (201, task)})
    )
    assert json.loads(result.out) == task


def _phases(*tasks: dict[str, Any]) -> Any:
    """A GET /tasks/{id} that answers each of `tasks` in turn (the last one from then on)."""
    answers = list(tasks)

    def answer(request: httpx.Request) -> httpx.Response:
        assert request.url.params["wait"] == "1.0"
        return httpx.Response(200, json=answers.pop(0) if len(answers) > 1 else answers[0])

    return answer


def test_submit_wait_prints_the_output_and_exits_0_on_success() -> None:
    server = Recorder(
        {
            ("POST", "/tasks"): (201, make_task("abc")),
            ("GET", "/tasks/abc"): _phases(
                make_task("abc", "Running", reason="Started"),
                make_task(
                    "abc",
                    "Succeeded",
                    reason="Completed",
                    stdout="hi\n",
                    result="hi\n",
                    stderr="a warning\n",
                ),
            ),
        }
    )
    result = run_cli(["submit", "-c", "print('hi')", "--wait"], server)
    assert result.code == 0
    assert result.out == "hi\n"  # exactly the task's stdout, nothing else
    progress = result.err.splitlines()
    assert progress[0] == "task/abc created"
    assert [line.split(":")[1].split()[0] for line in progress[1:4]] == [
        "Pending",
        "Running",
        "Succeeded",
    ]  # one line per phase change when not a terminal
    assert "a warning" in result.err


@pytest.mark.parametrize(
    ("phase", "reason", "message", "result_text", "stderr", "shown"),
    [
        pytest.param(
            "Failed",
            "NonZeroExit",
            "exited with code 1",
            "ValueError: x",
            "Traceback ...\nValueError: x\n",
            "ValueError: x",
            id="failed",
        ),
        pytest.param(
            "TimedOut",
            "DeadlineExceeded",
            "ran past its deadline",
            "exceeded its 2 s timeout and was killed",
            "",
            "exceeded its 2 s timeout",
            id="timed-out",
        ),
        pytest.param(
            "Cancelled",
            "Cancelled",
            "cancelled on request",
            "cancelled",
            "",
            "cancelled on request",
            id="cancelled",
        ),
    ],
)
def test_submit_wait_exits_1_with_the_reason_when_the_task_fails(
    phase: str,
    reason: str,
    message: str,
    result_text: str,
    stderr: str,
    shown: str,
) -> None:
    done = make_task(
        "abc",
        phase,
        reason=reason,
        message=message,
        result=result_text,
        stdout="partial\n",
        stderr=stderr,
    )
    server = Recorder(
        {("POST", "/tasks"): (201, make_task("abc")), ("GET", "/tasks/abc"): (200, done)}
    )
    result = run_cli(["submit", "-c", "x", "--wait"], server)
    assert result.code == 1
    assert result.out == "partial\n"
    assert f"error: task/abc {phase} ({reason}): {message}" in result.err
    assert shown in result.err


def test_the_error_line_never_sticks_to_the_tasks_last_stderr_line() -> None:
    done = make_task(
        "abc",
        "Failed",
        reason="NonZeroExit",
        message="exited with code 1",
        stdout="",
        stderr="no newline at the end",
        result="no newline at the end",
    )
    server = Recorder(
        {("POST", "/tasks"): (201, make_task("abc")), ("GET", "/tasks/abc"): (200, done)}
    )
    result = run_cli(["submit", "-c", "x", "--wait"], server)
    assert "no newline at the end\nerror: task/abc Failed" in result.err


def test_submit_wait_ctrl_c_says_the_task_keeps_going() -> None:
    def interrupted(_request: httpx.Request) -> httpx.Response:
        raise KeyboardInterrupt

    server = Recorder(
        {("POST", "/tasks"): (201, make_task("abc")), ("GET", "/tasks/abc"): interrupted}
    )
    result = run_cli(["submit", "-c", "x", "--wait"], server)
    assert result.code == 130
    assert "taskyard cancel abc" in result.err
    assert "Traceback" not in result.err


def test_submit_watch_prints_every_transition_from_creation_then_the_output() -> None:
    def watch(request: httpx.Request) -> httpx.Response:
        assert request.url.params["task_id"] == "abc"
        assert request.url.params["since"] == "9"  # replays from the task's first event
        return httpx.Response(
            200,
            stream=Stream(
                frame(10, None, "Pending", "abc")
                + ": keepalive\n\n"
                + frame(11, "Pending", "Scheduled", "abc")
                + frame(12, "Scheduled", "Running", "abc")
                + frame(13, "Running", "Succeeded", "abc")
            ),
        )

    done = make_task("abc", "Succeeded", reason="Completed", stdout="out\n", result="out\n")
    server = Recorder(
        {
            ("POST", "/tasks"): (201, make_task("abc")),
            ("GET", "/tasks/abc/events"): (200, {"items": [{"seq": 10}]}),
            ("GET", "/watch"): watch,
            ("GET", "/tasks/abc"): (200, done),
        }
    )
    result = run_cli(["submit", "-c", "x", "--watch"], server)
    assert result.code == 0
    assert result.out == "out\n"
    lines = [line for line in result.err.splitlines() if line.lstrip()[:2].isdigit()]
    assert [line.split()[0] for line in lines] == ["10", "11", "12", "13"]
    assert "Running → Succeeded" in lines[-1] or "Running -> Succeeded" in lines[-1]


def test_submit_watch_falls_back_to_waiting_without_a_watch_endpoint() -> None:
    done = make_task("abc", "Succeeded", reason="Completed", stdout="out\n", result="out\n")
    server = Recorder(
        {
            ("POST", "/tasks"): (201, make_task("abc")),
            ("GET", "/tasks/abc/events"): (200, {"items": [{"seq": 1}]}),
            ("GET", "/watch"): (404, {"detail": "Not Found"}),
            ("GET", "/tasks/abc"): (200, done),
        }
    )
    result = run_cli(["submit", "-c", "x", "--watch"], server)
    assert result.code == 0 and result.out == "out\n"
    assert "no /watch" in result.err


# ---- get, list, cancel ----------------------------------------------------------------------


def test_get_shows_a_summary() -> None:
    task = make_task(
        "abc",
        "Succeeded",
        reason="Completed",
        message="exited with code 0",
        result="hello\n",
        assigned={"cpus": [0, 1], "gpus": []},
        attempt=2,
        exit_code=0,
        finished_at="2026-11-27T22:00:03Z",
    )
    result = run_cli(["get", "abc"], Recorder({("GET", "/tasks/abc"): (200, task)}))
    assert result.code == 0
    fields = dict(
        line.split(":", 1)
        for line in result.out.splitlines()
        if ":" in line and not line.startswith(" ")
    )
    assert fields["ID"].strip() == "abc"
    assert fields["Phase"].strip() == "Succeeded"
    assert fields["Reason"].strip() == "Completed"
    assert fields["Attempt"].strip() == "2"
    assert fields["Assigned"].strip() == "cpus 0,1, gpus -"
    assert fields["Exit code"].strip() == "0"
    assert fields["Finished"].strip().startswith("2026-11-27T22:00:03Z (")
    assert result.out.endswith("Result:\n  hello\n")


def test_get_json_is_the_servers_task_unchanged() -> None:
    task = make_task("abc", extra_field={"kept": True})
    result = run_cli(["get", "abc", "-o", "json"], Recorder({("GET", "/tasks/abc"): (200, task)}))
    assert json.loads(result.out) == task


def test_get_unknown_task_exits_1_with_the_servers_detail() -> None:
    result = run_cli(
        ["get", "nope"],
        Recorder({("GET", "/tasks/nope"): (404, {"detail": "task nope not found"})}),
    )
    assert (result.code, result.out, result.err) == (
        1,
        "",
        "error: task nope not found (an id prefix needs 8 characters or more)\n",
    )


def test_list_table_and_filters() -> None:
    server = Recorder(
        {
            ("GET", "/tasks"): (
                200,
                {
                    "items": [
                        make_task("a1", "Running", reason="Started", cpu="2", ram="1GB"),
                        make_task("b22", "Pending", reason="Unschedulable"),
                    ],
                    "next_cursor": None,
                },
            )
        }
    )
    result = run_cli(["list", "--phase", "Running", "--limit", "7"], server)
    assert result.code == 0
    header, first, second = result.out.splitlines()
    assert header.split() == ["ID", "PHASE", "REASON", "CPU", "RAM", "AGE"]
    assert first.split()[:5] == ["a1", "Running", "Started", "2", "1GB"]
    assert second.split()[:5] == ["b22", "Pending", "Unschedulable", "1", "256MB"]
    assert header.index("PHASE") == first.index("Running") == second.index("Pending")
    params = server.requests[0].url.params
    assert (params["phase"], params["limit"]) == ("Running", "7")


def test_list_all_follows_next_cursor() -> None:
    def pages(request: httpx.Request) -> httpx.Response:
        cursor = request.url.params.get("cursor")
        if cursor is None:
            return httpx.Response(200, json={"items": [make_task("a")], "next_cursor": "5"})
        assert cursor == "5"
        return httpx.Response(200, json={"items": [make_task("b")], "next_cursor": None})

    result = run_cli(["list", "--all", "-o", "json"], Recorder({("GET", "/tasks"): pages}))
    assert [t["id"] for t in json.loads(result.out)["items"]] == ["a", "b"]
    one_page = run_cli(["list"], Recorder({("GET", "/tasks"): pages}))
    assert [line.split()[0] for line in one_page.out.splitlines()[1:]] == ["a"]
    assert "--all" in one_page.err


def test_list_empty_says_so_on_stderr() -> None:
    result = run_cli(
        ["list"], Recorder({("GET", "/tasks"): (200, {"items": [], "next_cursor": None})})
    )
    assert (result.code, result.out, result.err) == (0, "", "No tasks found.\n")


def test_list_rejects_an_unknown_phase_as_usage(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["list", "--phase", "Done"])
    assert raised.value.code == 2


def test_cancel_prints_what_kubectl_would_and_409_is_an_error() -> None:
    def cancel(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/done"):
            return httpx.Response(
                409, json={"detail": "task done is already Succeeded; nothing to cancel"}
            )
        return httpx.Response(202, json=make_task("run"))

    server = Recorder({("DELETE", "/tasks/run"): cancel, ("DELETE", "/tasks/done"): cancel})
    ok = run_cli(["cancel", "run"], server)
    assert (ok.code, ok.out) == (0, "task/run cancellation requested\n")
    both = run_cli(["cancel", "run", "done"], server)
    assert both.code == 1
    assert both.out == "task/run cancellation requested\n"
    assert both.err == "error: task done is already Succeeded; nothing to cancel\n"


# ---- errors and exit codes ------------------------------------------------------------------


def test_a_422_list_detail_is_rendered_per_field() -> None:
    detail = [
        {
            "loc": ["body", "resources", "cpu"],
            "msg": "Value error, '-1' should be a non-negative integer string such as '2'",
            "type": "value_error",
        },
        {
            "loc": ["body", "resources", "ram"],
            "msg": "Value error, '5' is not a valid size",
            "type": "value_error",
        },
    ]
    result = run_cli(
        ["submit", "-c", "x", "--cpu", "-1", "--ram", "5"],
        Recorder({("POST", "/tasks"): (422, {"detail": detail})}),
    )
    assert result.code == 1
    assert result.err == (
        "error: resources.cpu: '-1' should be a non-negative integer string "
        "such as '2'; resources.ram: '5' is not a valid size\n"
    )


@pytest.mark.parametrize(
    ("status", "body", "code", "err"),
    [
        pytest.param(
            404,
            {"detail": "task x not found"},
            1,
            "error: task x not found (an id prefix needs 8 characters or more)\n",
            id="404",
        ),
        pytest.param(409, {"detail": "busy"}, 1, "error: busy\n", id="409"),
        pytest.param(500, None, 1, "error: Internal Server Error\n", id="500-plain-text"),
        pytest.param(
            503, {"detail": "database is locked"}, 1, "error: database is locked\n", id="503"
        ),
    ],
)
def test_server_errors_exit_1(status: int, body: Any, code: int, err: str) -> None:
    def answer(_request: httpx.Request) -> httpx.Response:
        if body is None:
            return httpx.Response(status, text="Internal Server Error")
        return httpx.Response(status, json=body)

    result = run_cli(["get", "x"], Recorder({("GET", "/tasks/x"): answer}))
    assert (result.code, result.err) == (code, err)


def test_connection_refused_exits_3_naming_the_address_and_how_to_change_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code = main(["list", "--server", url])
    err = capsys.readouterr().err
    assert code == 3
    assert err == (
        f"error: cannot reach taskyard at {url}: [Errno 111] Connection refused; "
        "is `taskyard serve` running?\n"
        f"  (the address {url} is from --server; name another with --server URL or "
        "TASKYARD_SERVER=URL)\n"
    )


def test_the_server_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("TASKYARD_SERVER", url + "/")
    assert main(["get", "x"]) == 3
    err = capsys.readouterr().err
    assert f"cannot reach taskyard at {url}:" in err
    assert f"the address {url} is from $TASKYARD_SERVER;" in err


def test_the_server_comes_from_the_address_serve_wrote_in_its_data_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    (tmp_path / "server-url").write_text(url + "\n")
    monkeypatch.setenv("TASKYARD_DATA_DIR", str(tmp_path))
    assert main(["get", "x"]) == 3
    err = capsys.readouterr().err
    assert f"cannot reach taskyard at {url}:" in err
    assert f"is from {tmp_path / 'server-url'}, written by `taskyard serve`;" in err
    # The flag and the environment come first.
    other = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("TASKYARD_SERVER", other)
    assert main(["get", "x"]) == 3
    assert f"cannot reach taskyard at {other}:" in capsys.readouterr().err


def test_without_any_address_the_default_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused", request=request)

    result = run_cli(["list"], refused)
    assert result.code == 3
    assert "the address http://127.0.0.1:8000 is the default;" in result.err
    assert "--server URL or TASKYARD_SERVER=URL" in result.err


def test_a_user_token_is_sent_as_bearer(monkeypatch: pytest.MonkeyPatch) -> None:
    server = Recorder({("GET", "/tasks/x"): (200, make_task("x"))})
    monkeypatch.setenv("TASKYARD_TOKEN", "from-env")
    run_cli(["get", "x"], server)
    run_cli(["get", "x", "--token", "from-flag"], server)
    assert [r.headers["authorization"] for r in server.requests] == [
        "Bearer from-env",
        "Bearer from-flag",
    ]


# ---- watch ----------------------------------------------------------------------------------


def test_watch_prints_one_line_per_transition_until_the_task_ends() -> None:
    def watch(request: httpx.Request) -> httpx.Response:
        assert request.url.params["task_id"] == "t1"
        assert request.url.params["since"] == "3"
        return httpx.Response(
            200,
            stream=Stream(
                frame(4, None, "Pending")
                + frame(5, "Pending", "Scheduled")
                + frame(6, "Scheduled", "Running")
                + frame(7, "Running", "Succeeded")
            ),
        )

    result = run_cli(
        ["watch", "--task", "t1", "--since", "3"], Recorder({("GET", "/watch"): watch})
    )
    assert result.code == 0
    lines = result.out.splitlines()
    assert len(lines) == 4
    seq, clock, task, source, to_arrow, target, reason, *message = lines[1].split()
    assert (seq, task, source, target, reason) == ("5", "t1", "Pending", "Scheduled", "RScheduled")
    assert to_arrow in {"→", "->"}
    assert message == ["now", "Scheduled"]
    assert len(clock) == len("22:00:00.500") and clock.endswith(":00.500")
    assert lines[0].split()[3] == "-"  # the creation has no source phase


def test_watch_json_prints_each_event_on_its_own_line() -> None:
    server = Recorder(
        {
            ("GET", "/watch"): httpx.Response(
                200,
                stream=Stream(
                    frame(4, None, "Pending", "a") + frame(5, "Pending", "Scheduled", "b"),
                    then=KeyboardInterrupt(),
                ),
            )
        }
    )
    result = run_cli(["watch", "-o", "json", "--phase", "Scheduled"], server)
    assert result.code == 0  # Ctrl-C is how a watch ends
    assert [json.loads(line)["seq"] for line in result.out.splitlines()] == [4, 5]
    assert "Traceback" not in result.err
    assert server.requests[0].url.params["phase"] == "Scheduled"


def test_watch_reconnects_and_says_so() -> None:
    calls = 0

    def watch(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            return httpx.Response(
                200, stream=Stream(frame(1, None, "Pending"), then=httpx.ReadError("reset by peer"))
            )
        assert request.headers["last-event-id"] == "1"
        return httpx.Response(
            200, stream=Stream(frame(1, None, "Pending") + frame(2, "Pending", "Cancelled"))
        )

    result = run_cli(["watch", "--task", "t1"], Recorder({("GET", "/watch"): watch}))
    assert result.code == 0
    assert [line.split()[0] for line in result.out.splitlines()] == ["1", "2"]
    assert "connection lost (reset by peer); reconnecting" in result.err


def test_watch_410_says_so_and_relists() -> None:
    calls = 0

    def watch(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            return httpx.Response(
                410, json={"detail": "transitions up to seq 90 were compacted away"}
            )
        assert "since" not in request.url.params and "last-event-id" not in request.headers
        return httpx.Response(
            200, stream=Stream(frame(95, None, "Pending", "new"), then=KeyboardInterrupt())
        )

    result = run_cli(["watch", "--since", "3"], Recorder({("GET", "/watch"): watch}))
    assert result.code == 0
    assert "compacted away" in result.err and "restarting from the current state" in result.err
    assert result.out.split()[0] == "95"


def test_watch_410_on_a_finished_task_ends_with_its_phase() -> None:
    server = Recorder(
        {
            ("GET", "/watch"): (410, {"detail": "transitions up to seq 90 were compacted away"}),
            ("GET", "/tasks/old"): (200, make_task("old", "Succeeded", reason="Completed")),
        }
    )
    result = run_cli(["watch", "--task", "old"], server)
    assert result.code == 0
    assert "task/old is now Succeeded" in result.err


def test_watch_that_cannot_connect_exits_3() -> None:
    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused", request=request)

    result = run_cli(["watch"], Recorder({("GET", "/watch"): refused}))
    assert result.code == 3
    assert result.err.splitlines()[0] == (
        "error: cannot reach taskyard at http://127.0.0.1:8000: Connection "
        "refused; is `taskyard serve` running?"
    )


def test_watch_that_loses_the_server_for_good_exits_3() -> None:
    calls = 0

    def watch(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            return httpx.Response(
                200, stream=Stream(frame(1, None, "Pending"), then=httpx.ReadError("reset"))
            )
        raise httpx.ConnectError("Connection refused", request=request)

    result = run_cli(["watch"], Recorder({("GET", "/watch"): watch}))
    assert result.code == 3
    assert result.out.split()[0] == "1"
    assert result.err.count("reconnecting") == 5
    assert result.err.splitlines()[-1] == (
        "error: lost the watch on taskyard at http://127.0.0.1:8000: Connection refused; "
        "gave up after 5 reconnects"
    )


@pytest.mark.parametrize(
    "argv, allowed",
    [
        (["serve"], ""),
        (["serve", "--allowed-host", "box.lan"], "box.lan"),
        (
            ["api", "--allowed-host", "box.lan", "--allowed-host", "box.lan:8000"],
            "box.lan,box.lan:8000",
        ),
    ],
)
def test_allowed_host_flags_become_the_setting(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], allowed: str
) -> None:
    import taskyard.service

    monkeypatch.delenv("TASKYARD_ALLOWED_HOSTS", raising=False)
    started: list[Any] = []
    monkeypatch.setattr(taskyard.service, "run_api", lambda settings, **_: started.append(settings))
    assert main(argv) == 0
    assert started[0].allowed_hosts == allowed
