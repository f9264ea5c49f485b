"""`Client` and `AsyncClient` against `httpx.MockTransport` servers, each case run on both: what
they send, how they wait and page, and which exception each error answer becomes."""

import json
import types
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
from client_async import run_async

from taskyard import (
    ApiError,
    AsyncClient,
    Client,
    ClientError,
    Conflict,
    InvalidRequest,
    QuotaExceeded,
    ServerError,
    TaskNotFound,
    Unauthorized,
    WaitTimeout,
)
from taskyard.client import HistoryGone, LogEnd, OutputChunk, Task

URL = "http://taskyard.test"
Handler = Callable[[httpx.Request], httpx.Response]


def task(task_id: str = "t1", phase: str = "Pending", **status: Any) -> dict[str, Any]:
    return {
        "id": task_id,
        "created_at": "2026-11-27T22:00:00Z",
        "resource_version": 1,
        "spec": {
            "task_type": "execute_code",
            "code": "print(1)",
            "resources": {"cpu": "1", "gpu": "0", "ram": "256MB", "storage": "100MB"},
            "timeout_seconds": 30,
            "stdin": None,
            "interactive": False,
        },
        "status": {"phase": phase, "reason": "Created", "message": "", "stdout": None, **status},
    }


async def _no_sleep(_seconds: float) -> None:
    return None


class Api:
    """One client flavour: calls a method by name, and collects what an iterator yields."""

    def __init__(self, flavour: str, handler: Handler, **options: Any) -> None:
        self.flavour = flavour
        self.handler = handler
        self.options = options

    def __call__(self, method: str, *args: Any, **kwargs: Any) -> Any:
        if self.flavour == "sync":
            with Client(
                URL,
                token="",
                transport=httpx.MockTransport(self.handler),
                sleep=lambda _s: None,
                **self.options,
            ) as client:
                result = getattr(client, method)(*args, **kwargs)
                return list(result) if isinstance(result, types.GeneratorType) else result
        return run_async(self._async(method, *args, **kwargs))

    async def _async(self, method: str, *args: Any, **kwargs: Any) -> Any:
        async with AsyncClient(
            URL,
            token="",
            transport=httpx.MockTransport(self.handler),
            sleep=_no_sleep,
            **self.options,
        ) as client:
            result = getattr(client, method)(*args, **kwargs)
            if isinstance(result, types.AsyncGeneratorType):
                return [item async for item in result]
            return await result


@pytest.fixture(params=["sync", "async"])
def api(request: pytest.FixtureRequest) -> Callable[..., Api]:
    return lambda handler, **options: Api(request.param, handler, **options)


class Recorder:
    """A fake server answering from `answers` (one per request, the last one repeated)."""

    def __init__(self, *answers: httpx.Response) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.answers[min(len(self.requests), len(self.answers)) - 1]

    def bodies(self) -> list[Any]:
        return [json.loads(request.content) for request in self.requests]


# --- what submit sends ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "sent"),
    [
        pytest.param(
            {},
            {"resources": {"cpu": "1", "gpu": "0", "ram": "256MB", "storage": "100MB"}},
            id="the-cli-defaults",
        ),
        pytest.param(
            {"resources": {"ram": "1gb", "cpu": 2}},
            {"resources": {"cpu": "2", "gpu": "0", "ram": "1gb", "storage": "100MB"}},
            id="resources-fill-in-the-defaults-counts-may-be-ints",
        ),
        pytest.param(
            {"timeout": 5, "stdin": "x\n", "interactive": True},
            {
                "timeout_seconds": 5,
                "stdin": "x\n",
                "interactive": True,
                "resources": {"cpu": "1", "gpu": "0", "ram": "256MB", "storage": "100MB"},
            },
            id="timeout-stdin-and-other-fields",
        ),
    ],
)
def test_submit_sends_the_contracts_body(
    api: Callable[..., Api], kwargs: dict[str, Any], sent: dict[str, Any]
) -> None:
    server = Recorder(httpx.Response(201, json=task()))

    created = api(server)("submit", "print(1)", **kwargs)

    assert isinstance(created, Task) and created.status.phase == "Pending"
    assert server.bodies() == [{"task_type": "execute_code", "code": "print(1)", **sent}]
    assert server.requests[0].url.path == "/tasks"


def test_a_tasks_spec_submits_the_same_task_again(api: Callable[..., Api]) -> None:
    old = Task(task())
    old.spec.timeout_seconds, old.spec.stdin = 7, "in"
    server = Recorder(httpx.Response(201, json=task()))

    api(server)("submit", **old.spec)

    assert server.bodies() == [dict(old.spec)]


def test_timeout_and_timeout_seconds_together_are_refused() -> None:
    with Client(URL, token="") as client, pytest.raises(TypeError, match="not both"):
        client.submit("pass", timeout=5, timeout_seconds=6)


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "detail", "kind", "message"),
    [
        pytest.param(404, "task t9 not found", TaskNotFound, "task t9 not found", id="404"),
        pytest.param(
            422,
            [{"loc": ["body", "resources", "ram"], "msg": "too small", "type": "x"}],
            InvalidRequest,
            "resources.ram: too small",
            id="422",
        ),
        pytest.param(413, "code is too large", InvalidRequest, "code is too large", id="413"),
        pytest.param(
            401, "a bearer token is needed", Unauthorized, "a bearer token is needed", id="401"
        ),
        pytest.param(403, "not the admin token", Unauthorized, "not the admin token", id="403"),
        pytest.param(
            409, "task t9 is already Succeeded", Conflict, "task t9 is already Succeeded", id="409"
        ),
        pytest.param(
            429, "quota: 5 unfinished tasks", QuotaExceeded, "quota: 5 unfinished tasks", id="429"
        ),
        pytest.param(503, "storage is busy", ServerError, "storage is busy", id="503"),
        pytest.param(418, None, ApiError, "the server answered HTTP 418", id="other"),
    ],
)
def test_each_error_answer_is_its_own_exception(
    api: Callable[..., Api], status: int, detail: Any, kind: type[ApiError], message: str
) -> None:
    server = Recorder(httpx.Response(status, json={"detail": detail}))

    with pytest.raises(kind) as raised:
        api(server)("get", "t9")

    assert type(raised.value) is kind
    assert isinstance(raised.value, ClientError)
    assert (raised.value.status, str(raised.value)) == (status, message)


@pytest.mark.parametrize("method", ["get", "cancel", "events", "logs"])
def test_a_404_names_the_task(api: Callable[..., Api], method: str) -> None:
    server = Recorder(httpx.Response(404, json={"detail": "Not Found"}))

    with pytest.raises(TaskNotFound) as raised:
        api(server)(method, "no-such-task")

    assert raised.value.task_id == "no-such-task"


def test_a_watch_whose_history_is_gone_says_so(api: Callable[..., Api]) -> None:
    server = Recorder(httpx.Response(410, json={"detail": "compacted through seq 9"}))

    with pytest.raises(HistoryGone, match="compacted"):
        api(server)("watch", since=3)


# --- waiting ------------------------------------------------------------------------------


def test_wait_repeats_short_waits_until_the_task_ends(api: Callable[..., Api]) -> None:
    server = Recorder(
        httpx.Response(200, json=task(phase="Running")),
        httpx.Response(200, json=task(phase="Running")),
        httpx.Response(200, json=task(phase="Succeeded", stdout="hi\n")),
    )

    done = api(server, wait_step=2)("wait", "t1")

    assert done.status.stdout == "hi\n" and done["status"]["phase"] == "Succeeded"
    assert [r.url.params["wait"] for r in server.requests] == ["2", "2", "2"]
    assert all(r.extensions["timeout"]["read"] >= 2 for r in server.requests)


def test_run_submits_then_waits(api: Callable[..., Api]) -> None:
    answers = {"POST": task(), "GET": task(phase="Failed", stdout="", result="boom")}
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.path}?{request.url.query.decode()}")
        return httpx.Response(
            201 if request.method == "POST" else 200, json=answers[request.method]
        )

    ended = api(handler)("run", "raise SystemExit(1)", timeout=5)

    assert ended.status.phase == "Failed"  # returned, not raised: the caller reads the phase
    assert seen == ["POST /tasks?", "GET /tasks/t1?wait=60.0"]


def test_wait_gives_up_after_max_wait_with_the_task_as_last_read(
    api: Callable[..., Api],
) -> None:
    server = Recorder(httpx.Response(200, json=task(phase="Pending")))

    with pytest.raises(WaitTimeout) as raised:
        api(server, wait_step=1)("wait", "t1", max_wait=0)

    assert raised.value.task.status.phase == "Pending"
    assert str(raised.value) == "task t1 is still Pending after 0 s of waiting"


@pytest.mark.parametrize("step", [0, -1, 61])
def test_a_wait_step_beyond_the_servers_cap_is_refused(step: float) -> None:
    with pytest.raises(ValueError, match="at most 60"):
        Client(URL, wait_step=step)


# --- listing ------------------------------------------------------------------------------


def pages(count: int, size: int) -> Handler:
    """GET /tasks over `count` tasks t0..t{count-1}, newest first, `size` per page at most."""
    ids = [f"t{n}" for n in reversed(range(count))]

    def handler(request: httpx.Request) -> httpx.Response:
        limit = int(request.url.params.get("limit", 50))
        start = ids.index(request.url.params["cursor"]) + 1 if "cursor" in request.url.params else 0
        page = ids[start : start + min(limit, size)]
        more = start + len(page) < len(ids)
        return httpx.Response(
            200, json={"items": [task(i) for i in page], "next_cursor": page[-1] if more else None}
        )

    return handler


def recorded(handler: Handler) -> tuple[Handler, list[httpx.Request]]:
    requests: list[httpx.Request] = []

    def recording(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return handler(request)

    return recording, requests


def test_list_follows_every_page(api: Callable[..., Api]) -> None:
    handler, requests = recorded(pages(7, size=3))

    listed = api(handler)("list", page_size=3)

    assert [t.id for t in listed] == ["t6", "t5", "t4", "t3", "t2", "t1", "t0"]
    assert [r.url.params.get("cursor") for r in requests] == [None, "t4", "t1"]


def test_list_stops_at_its_limit_without_asking_for_more_pages(
    api: Callable[..., Api],
) -> None:
    handler, requests = recorded(pages(7, size=3))

    listed = api(handler)("list", "Pending", limit=4, page_size=3)

    assert [t.id for t in listed] == ["t6", "t5", "t4", "t3"]
    assert len(requests) == 2 and requests[0].url.params["phase"] == "Pending"


# --- streams ------------------------------------------------------------------------------


class Pieces(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A response body in pieces, then (optionally) a broken connection."""

    def __init__(self, *pieces: str, then: BaseException | None = None) -> None:
        self._pieces = [piece.encode() for piece in pieces]
        self._then = then

    def __iter__(self) -> Iterator[bytes]:
        yield from self._pieces
        if self._then is not None:
            raise self._then

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self._pieces:
            yield piece
        if self._then is not None:
            raise self._then


def sse(*frames: str, then: BaseException | None = None) -> httpx.Response:
    return httpx.Response(
        200, headers={"content-type": "text/event-stream"}, stream=Pieces(*frames, then=then)
    )


def transition(seq: int, to: str) -> str:
    data = {
        "seq": seq,
        "task_id": "t1",
        "from_phase": "Pending",
        "to_phase": to,
        "reason": "Started",
        "message": "m",
        "at": "2026-11-27T22:00:00Z",
        "resource_version": seq,
    }
    return f"id: {seq}\nevent: transition\ndata: {json.dumps(data)}\n\n"


def test_watch_resumes_after_a_dropped_connection_without_repeats(
    api: Callable[..., Api],
) -> None:
    server = Recorder(
        sse(transition(1, "Scheduled"), transition(2, "Running"), then=httpx.ReadError("reset")),
        sse(transition(2, "Running"), transition(3, "Succeeded")),
    )

    seen = api(server)("watch", "t1")

    assert [(t.seq, t.to_phase) for t in seen] == [
        (1, "Scheduled"),
        (2, "Running"),
        (3, "Succeeded"),
    ]
    assert server.requests[1].headers["last-event-id"] == "2"


def output(seq: int, text: str, stream: str = "stdout") -> str:
    data = {"seq": seq, "stream": stream, "text": text, "at": "2026-11-27T22:00:00Z"}
    return f"id: {seq}\nevent: output\ndata: {json.dumps(data)}\n\n"


END = 'event: end\ndata: {"phase": "Succeeded", "reason": "Completed", "exit_code": 0}\n\n'


def test_logs_are_the_output_chunks_and_log_events_end_with_the_outcome(
    api: Callable[..., Api],
) -> None:
    def server(request: httpx.Request) -> httpx.Response:
        assert request.url.params["follow"] == "true"
        return sse(output(1, "a\n"), output(2, "oops\n", "stderr"), END)

    chunks = api(server)("logs", "t1", follow=True)
    events = api(server)("log_events", "t1", follow=True)

    assert [(c.stream, c.text) for c in chunks] == [("stdout", "a\n"), ("stderr", "oops\n")]
    assert all(isinstance(c, OutputChunk) for c in chunks)
    assert isinstance(events[-1], LogEnd) and events[-1].phase == "Succeeded"
    assert events[:-1] == chunks


# --- where the server is ------------------------------------------------------------------


def test_url_and_token_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKYARD_SERVER", "http://elsewhere.test:9000/")
    monkeypatch.setenv("TASKYARD_TOKEN", "ty_secret")
    server = Recorder(httpx.Response(200, json=task()))

    with Client(transport=httpx.MockTransport(server)) as client:
        client.get("t1")
    with Client(token="", transport=httpx.MockTransport(server)) as client:
        client.get("t1")

    first, second = server.requests
    assert str(first.url) == "http://elsewhere.test:9000/tasks/t1"
    assert first.headers["authorization"] == "Bearer ty_secret"
    assert "authorization" not in second.headers  # "" sends no token at all


def test_without_settings_the_client_talks_to_the_local_server() -> None:
    with Client() as client:
        assert client.base_url == "http://127.0.0.1:8000"


# --- batches --------------------------------------------------------------------------------


def test_submit_batch_sends_each_task_as_submit_would_and_answers_the_ids(
    api: Callable[..., Api],
) -> None:
    created = {"id": "b1", "task_ids": ["t1", "t2"], "count": 2}
    server = Recorder(httpx.Response(201, json=created))
    spec = Task(task()).spec

    batch = api(server)("submit_batch", [{"code": "print(1)", "resources": {"cpu": 2}}, spec])

    assert batch == created and batch.task_ids == ["t1", "t2"]
    assert server.requests[0].url.path == "/batches"
    first = {
        "task_type": "execute_code",
        "code": "print(1)",
        "resources": {"cpu": "2", "gpu": "0", "ram": "256MB", "storage": "100MB"},
    }
    assert server.bodies() == [{"tasks": [first, dict(spec)]}]


def test_a_batch_task_without_code_is_refused_before_sending() -> None:
    with (
        Client(URL, token="") as client,
        pytest.raises(TypeError, match="task 1 of the batch has no code"),
    ):
        client.submit_batch([{"code": "pass"}, {"resources": {}}])


def test_a_refused_batch_names_the_item(api: Callable[..., Api]) -> None:
    detail = [{"loc": ["body", "tasks", 17, "resources", "cpu"], "msg": "bad", "type": "x"}]
    server = Recorder(httpx.Response(422, json={"detail": detail}))

    with pytest.raises(InvalidRequest, match=r"tasks\.17\.resources\.cpu: bad"):
        api(server)("submit_batch", [{"code": "pass"}])


def test_a_batch_is_read_cancelled_listed_and_watched_by_its_id(api: Callable[..., Api]) -> None:
    phases = dict.fromkeys(["Pending", "Running", "Succeeded"], 1)
    summary = {
        "id": "b1",
        "created_at": "2026-11-27T22:00:00Z",
        "count": 3,
        "done": 1,
        "phases": phases,
        "cancel_requested": 2,
    }
    server = Recorder(
        httpx.Response(200, json=summary),
        httpx.Response(202, json=summary),
        httpx.Response(200, json={"items": [task("t1")], "next_cursor": None}),
        sse(transition(1, "Succeeded")),
    )
    client = api(server)

    assert client("batch", "b1").phases == phases
    assert not client("cancel_batch", "b1").finished
    assert [t.id for t in client("list", batch="b1")] == ["t1"]
    # A batch watch ends when the server ends the stream: every task of it has ended.
    assert [t.seq for t in client("watch", batch="b1")] == [1]

    sent = [(r.method, r.url.path, dict(r.url.params)) for r in server.requests]
    assert sent == [
        ("GET", "/batches/b1", {}),
        ("DELETE", "/batches/b1", {}),
        ("GET", "/tasks", {"limit": "50", "batch": "b1"}),
        ("GET", "/watch", {"batch": "b1"}),
    ]
