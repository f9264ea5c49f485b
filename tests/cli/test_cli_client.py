"""The REST client: error rendering, the SSE parser, and the watch's reconnects (no gap, no
duplicate), against `httpx.MockTransport` servers."""

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from harness import free_port

from taskyard.client import (
    ApiError,
    CannotConnect,
    Client,
    HistoryGone,
    SseEvent,
    parse_sse,
    render_detail,
)


class Chunks(httpx.SyncByteStream):
    """A response body sent in pieces, optionally ending in a broken connection."""

    def __init__(self, *chunks: str, then: BaseException | None = None) -> None:
        self._chunks = [chunk.encode() for chunk in chunks]
        self._then = then

    def __iter__(self) -> Iterator[bytes]:
        yield from self._chunks
        if self._then is not None:
            raise self._then


def frame(seq: int, to: str = "Running", task: str = "t1", **extra: Any) -> str:
    data = {
        "seq": seq,
        "task_id": task,
        "from_phase": "Pending",
        "to_phase": to,
        "reason": "Started",
        "message": "m",
        "at": "2026-11-27T22:00:00Z",
        "resource_version": seq,
        **extra,
    }
    return f"id: {seq}\nevent: transition\ndata: {json.dumps(data)}\n\n"


def sse(*chunks: str, then: BaseException | None = None) -> httpx.Response:
    return httpx.Response(
        200, headers={"content-type": "text/event-stream"}, stream=Chunks(*chunks, then=then)
    )


def client_for(handler: Any) -> Client:
    return Client(
        "http://taskyard.test",
        token="",
        transport=httpx.MockTransport(handler),
        sleep=lambda _s: None,
    )


@pytest.mark.parametrize(
    ("detail", "shown"),
    [
        pytest.param("task x not found", "task x not found", id="sentence"),
        pytest.param(
            [
                {
                    "loc": ["body", "resources", "cpu"],
                    "msg": "Value error, '-1' should be a non-negative integer string",
                    "type": "value_error",
                }
            ],
            "resources.cpu: '-1' should be a non-negative integer string",
            id="field-error-body-prefix-dropped",
        ),
        pytest.param(
            [
                {"loc": ["body", "resources", "cpu"], "msg": "bad cpu", "type": "x"},
                {"loc": ["query", "limit"], "msg": "too big", "type": "x"},
            ],
            "resources.cpu: bad cpu; limit: too big",
            id="two-field-errors",
        ),
        pytest.param(
            [{"loc": [], "msg": "whole body wrong", "type": "x"}], "whole body wrong", id="no-loc"
        ),
        pytest.param({"odd": 1}, '{"odd": 1}', id="unknown-shape-as-json"),
        pytest.param(None, "", id="none"),
    ],
)
def test_render_detail(detail: Any, shown: str) -> None:
    assert render_detail(detail) == shown


def test_sse_parser_follows_the_standard() -> None:
    lines = [
        ": heartbeat comment",
        "",  # a lone comment dispatches nothing
        "id: 1",
        "event: transition",
        'data: {"a":',
        "data:  1}",
        "",  # multi-line data
        "id:2",
        "data:x",
        "",  # no space after the colon
        "data",
        "",  # a field name alone: empty value
        "event: transition",
        "id: 3",  # never completed by a blank line
    ]
    events = list(parse_sse(lines))
    assert events == [
        SseEvent("1", "transition", '{"a":\n 1}'),
        SseEvent("2", "message", "x"),
        SseEvent("2", "message", ""),  # the id carries over, as EventSource's lastEventId
    ]
    assert json.loads(events[0].data) == {"a": 1}


def test_watch_reconnects_with_last_event_id_and_never_repeats() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) == 1:
            # Split mid-line and CRLF line ends: the reader must reassemble lines.
            body = ": hello\r\n\r\n" + frame(1) + frame(2)
            return sse(body[:30], body[30:], then=httpx.ReadError("connection reset"))
        # A sloppy server sends 2 again; the client must not.
        return sse(frame(2), ": keepalive\n\n", frame(3, to="Succeeded"))

    retries: list[tuple[str, int]] = []
    with client_for(handler) as client:
        events = list(
            client.watch(
                task_id="t1", since=0, on_retry=lambda why, n, _d: retries.append((why, n))
            )
        )

    assert [e["seq"] for e in events] == [1, 2, 3]
    assert seen[0].url.params["since"] == "0" and "last-event-id" not in seen[0].headers
    assert seen[1].headers["last-event-id"] == "2" and "since" not in seen[1].url.params
    assert seen[1].url.params["task_id"] == "t1"
    assert retries == [("connection reset", 1)]


def test_watch_on_all_tasks_reconnects_after_a_clean_close_too() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            return sse(frame(5, task="a"))  # e.g. the server restarted gracefully
        assert request.headers["last-event-id"] == "5"
        return sse(frame(6, task="b"), then=KeyboardInterrupt())

    with client_for(handler) as client, pytest.raises(KeyboardInterrupt):
        events: list[int] = []
        for event in client.watch():
            events.append(event["seq"])
    assert events == [5, 6]


def test_watch_gives_up_after_retries_in_a_row() -> None:
    attempts = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            return sse(frame(1), then=httpx.ReadError("reset"))
        raise httpx.ConnectError("Connection refused", request=request)

    seqs: list[int] = []
    with client_for(handler) as client, pytest.raises(CannotConnect) as raised:
        seqs.extend(event["seq"] for event in client.watch(retries=3))
    assert seqs == [1]
    assert attempts == 1 + 3  # the first connection, then three reconnects
    assert str(raised.value) == (
        "lost the watch on taskyard at http://taskyard.test: "
        "Connection refused; gave up after 3 reconnects"
    )
    assert raised.value.exit_code == 3


def test_watch_on_a_server_that_is_not_there_fails_at_once() -> None:
    attempts = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal attempts
        attempts += 1
        raise httpx.ConnectError("Connection refused", request=request)

    with client_for(handler) as client, pytest.raises(CannotConnect) as raised:
        list(client.watch())
    assert attempts == 1
    assert "is `taskyard serve` running?" in str(raised.value)


def test_watch_retries_a_5xx_only_once_it_was_connected() -> None:
    answers = [
        sse(frame(1), then=httpx.ReadError("reset")),
        httpx.Response(503, json={"detail": "starting"}),
        sse(frame(2, to="Succeeded")),
    ]

    def handler(request: httpx.Request) -> httpx.Response:
        return answers.pop(0)

    with client_for(handler) as client:
        assert [e["seq"] for e in client.watch(task_id="t1")] == [1, 2]
    with (
        client_for(lambda r: httpx.Response(503, json={"detail": "starting"})) as client,
        pytest.raises(ApiError) as raised,
    ):
        list(client.watch())
    assert (raised.value.status, str(raised.value)) == (503, "starting")


def test_watch_410_relists_from_the_current_state() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) == 1:
            return httpx.Response(
                410, json={"detail": "transitions up to seq 40 were compacted away"}
            )
        return sse(frame(41), frame(42, to="Succeeded"))

    gone: list[HistoryGone] = []

    def on_gone(exc: HistoryGone) -> int | None:
        gone.append(exc)
        return None

    with client_for(handler) as client:
        events = list(client.watch(task_id="t1", since=3, on_gone=on_gone))
    assert [e["seq"] for e in events] == [41, 42]
    assert gone and gone[0].status == 410 and "compacted" in str(gone[0])
    assert "since" not in seen[1].url.params and "last-event-id" not in seen[1].headers


def test_watch_410_twice_in_a_row_is_an_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(410, json={"detail": "compacted"})

    with client_for(handler) as client, pytest.raises(HistoryGone):
        list(client.watch(since=1, on_gone=lambda _e: None))


def test_watch_404_is_not_retried() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(404, json={"detail": "Not Found"})

    with client_for(handler) as client, pytest.raises(ApiError) as raised:
        list(client.watch())
    assert calls == 1 and raised.value.status == 404


def test_a_refused_connection_is_one_clear_line() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with Client(url, token="") as client, pytest.raises(CannotConnect) as raised:
        client.get("abc")
    message = str(raised.value)
    assert message.startswith(f"cannot reach taskyard at {url}: ")
    assert "is `taskyard serve` running?" in message
    assert "\n" not in message


def test_a_waiting_get_does_not_time_out_before_the_server_answers() -> None:
    timeouts: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        timeouts.append(request.extensions["timeout"])
        return httpx.Response(200, json={"id": "t1"})

    with client_for(handler) as client:
        client.get("t1", wait=55)
    assert timeouts[0]["read"] >= 55
