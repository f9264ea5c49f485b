"""GET /tasks/{id}/logs (a task's output as Server-Sent Events) through the real app, served by
uvicorn in a thread over a real SQLite file, with no controller running: the test stores output
chunks and moves the task the way the controller does (`OutputChunk` rows, then
`controller.status.move`).

A followed stream only ends when its task does, so every read here is bounded: httpx gives up
on a read after a few seconds, and each helper fails the test when what it waits for has not
arrived by its deadline. Heartbeats come every 0.2 s.
"""

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from live_server import serving
from sqlalchemy import update
from sqlmodel import col, select

from controller.compaction import compact_history
from controller.status import move
from models.clock import utcnow
from models.database import Database, open_database
from models.phases import Phase, Reason
from models.settings import Settings
from models.tables import OutputChunk, Task

TASK = {
    "task_type": "execute_code",
    "code": "print(1)",
    "resources": {"cpu": "1", "gpu": "0", "ram": "64MB", "storage": "100MB"},
}
OUTPUT_KEYS = {"seq", "stream", "text", "at"}
END_KEYS = {"phase", "reason", "exit_code", "stdout_truncated", "stderr_truncated"}
READ_TIMEOUT = 5.0


# --- a live server ----------------------------------------------------------------------------


@dataclass
class Live:
    url: str
    db: Database
    settings: Settings
    http: httpx.Client
    streams: list["LogStream"] = field(default_factory=list)

    def submit(self) -> str:
        response = self.http.post("/tasks", json=TASK)
        assert response.status_code == 201, response.text
        task_id: str = response.json()["id"]
        return task_id

    def running(self) -> str:
        """A submitted task, moved to Running as the controller does."""
        task_id = self.submit()
        step(self.db, task_id, Phase.PENDING, Phase.SCHEDULED, Reason.SCHEDULED)
        step(self.db, task_id, Phase.SCHEDULED, Phase.RUNNING, Reason.STARTED, started_at=utcnow())
        return task_id

    def chunk(self, task_id: str, stream: str, data: bytes, *, attempt: int = 1) -> int:
        """Store one output chunk as the controller's writer does; its seq."""
        with self.db.write() as session:
            row = OutputChunk(task_id=task_id, attempt=attempt, stream=stream, data=data)
            session.add(row)
            session.commit()
            assert row.seq is not None
            return row.seq

    def finish(
        self,
        task_id: str,
        phase: Phase = Phase.SUCCEEDED,
        reason: Reason = Reason.COMPLETED,
        *,
        exit_code: int | None = 0,
        stdout: str = "",
        stderr: str = "",
        ago: float = 0.0,
        **fields: Any,
    ) -> None:
        step(
            self.db,
            task_id,
            Phase.RUNNING,
            phase,
            reason,
            exit_code=exit_code,
            stdout=stdout,
            stderr=stderr,
            result=stdout,
            finished_at=utcnow() - timedelta(seconds=ago),
            **fields,
        )

    def logs(
        self,
        task_id: str,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> "LogStream":
        stream = LogStream(self.http, task_id, params or {}, headers or {})
        self.streams.append(stream)
        return stream

    def status(self, task_id: str) -> dict[str, Any]:
        response = self.http.get(f"/tasks/{task_id}")
        assert response.status_code == 200
        status: dict[str, Any] = response.json()["status"]
        return status


def step(
    db: Database,
    task_id: str,
    from_phase: Phase,
    to_phase: Phase,
    reason: Reason,
    *,
    attempt: int = 1,
    **fields: Any,
) -> None:
    with db.write() as session:
        assert move(
            session,
            task_id=task_id,
            from_phase=from_phase,
            at_attempt=attempt,
            to_phase=to_phase,
            reason=reason,
            message=f"to {to_phase}",
            now=utcnow(),
            **fields,
        )


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    db = open_database(database_url)
    yield db
    db.dispose()


@pytest.fixture
def live(tmp_path: Path, database: Database) -> Iterator[Live]:
    settings = Settings(
        data_dir=tmp_path, watch_heartbeat_seconds=0.2, output_chunk_retention_seconds=60
    )
    with (
        serving(settings, database) as url,
        httpx.Client(base_url=url, timeout=READ_TIMEOUT) as http,
    ):
        result = Live(url, database, settings, http)
        try:
            yield result
        finally:
            for stream in result.streams:
                stream.close()


# --- reading Server-Sent Events ---------------------------------------------------------------


@dataclass
class Event:
    kind: str
    id: str | None
    data: dict[str, Any]
    arrived: float  # time.monotonic() when its last line was read


class LogStream:
    """One open GET /tasks/{id}/logs, read an event at a time."""

    def __init__(
        self, http: httpx.Client, task_id: str, params: dict[str, Any], headers: dict[str, str]
    ) -> None:
        self._context = http.stream("GET", f"/tasks/{task_id}/logs", params=params, headers=headers)
        self.response = self._context.__enter__()
        self._lines = self.response.iter_lines()
        self.comments: list[str] = []

    def close(self) -> None:
        self._context.__exit__(None, None, None)

    def event(self) -> Event | None:
        """The next event (comments skipped), or None when the server ended the stream."""
        fields: dict[str, str] = {}
        for line in self._lines:
            if line == "":
                if fields:
                    return parse(fields, time.monotonic())
                continue
            if line.startswith(":"):
                self.comments.append(line)
                continue
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
        assert not fields, f"stream ended inside an event: {fields}"
        return None

    def outputs(self, count: int, within: float = 5.0) -> list[Event]:
        """The next `count` events, which must all be output events."""
        deadline = time.monotonic() + within
        events: list[Event] = []
        while len(events) < count:
            assert time.monotonic() < deadline, f"got {len(events)} of {count}: {events}"
            event = self.event()
            assert event is not None, f"stream ended after {len(events)} of {count} outputs"
            assert event.kind == "output", f"expected output, got {event}"
            events.append(event)
        return events

    def until_closed(self, within: float = 5.0) -> list[Event]:
        """Every event up to the end of the stream, which must come within `within` s."""
        deadline = time.monotonic() + within
        events: list[Event] = []
        while True:
            assert time.monotonic() < deadline, f"stream still open after {events}"
            event = self.event()
            if event is None:
                return events
            events.append(event)

    def quiet_for(self, seconds: float) -> None:
        """Read for `seconds`: only heartbeats may come, and the stream stays open."""
        deadline = time.monotonic() + seconds
        seen = len(self.comments)
        while time.monotonic() < deadline:
            line = next(self._lines, None)
            assert line is not None, "stream ended"
            assert line == "" or line.startswith(":"), f"unexpected line {line!r}"
            if line.startswith(":"):
                self.comments.append(line)
        assert len(self.comments) > seen, "no heartbeat while the stream was idle"


def parse(fields: dict[str, str], arrived: float) -> Event:
    kind = fields["event"]
    data: dict[str, Any] = json.loads(fields["data"])
    if kind == "output":
        assert set(data) == OUTPUT_KEYS
        assert data["stream"] in {"stdout", "stderr"}
        assert data["at"].endswith("Z")
        if data["seq"] is not None:
            assert fields["id"] == str(data["seq"])
    else:
        assert kind == "end", f"unknown event {kind}"
        assert set(data) == END_KEYS
        assert "id" not in fields
    return Event(kind, fields.get("id"), data, arrived)


def texts(events: list[Event], stream: str | None = None) -> str:
    return "".join(
        e.data["text"] for e in events if e.kind == "output" and stream in (None, e.data["stream"])
    )


def ids(events: list[Event]) -> list[int]:
    return [int(e.id) for e in events if e.id is not None]


# --- replaying what exists --------------------------------------------------------------------


def test_a_finished_tasks_chunks_come_in_order_then_end(live: Live) -> None:
    task_id = live.running()
    seqs = [
        live.chunk(task_id, "stdout", b"line 1\n"),
        live.chunk(task_id, "stderr", b"warning: x\n"),
        live.chunk(task_id, "stdout", b"line 2\n"),
    ]
    live.finish(task_id, stdout="line 1\nline 2\n", stderr="warning: x\n")

    stream = live.logs(task_id)
    assert stream.response.status_code == 200
    assert stream.response.headers["content-type"].startswith("text/event-stream")
    assert stream.response.headers["cache-control"] == "no-cache"
    events = stream.until_closed()

    assert [e.kind for e in events] == ["output", "output", "output", "end"]
    assert [(e.data["stream"], e.data["text"]) for e in events[:3]] == [
        ("stdout", "line 1\n"),
        ("stderr", "warning: x\n"),
        ("stdout", "line 2\n"),
    ]
    assert ids(events) == seqs == [e.data["seq"] for e in events[:3]]
    assert events[-1].data == {
        "phase": "Succeeded",
        "reason": "Completed",
        "exit_code": 0,
        "stdout_truncated": False,
        "stderr_truncated": False,
    }


def test_the_end_event_carries_how_the_task_ended(live: Live) -> None:
    task_id = live.running()
    live.chunk(task_id, "stdout", b"x" * 100)
    live.finish(
        task_id,
        Phase.TIMED_OUT,
        Reason.DEADLINE_EXCEEDED,
        exit_code=137,
        stdout="x" * 100,
        stdout_truncated=True,
    )

    events = live.logs(task_id).until_closed()

    assert events[-1].data == {
        "phase": "TimedOut",
        "reason": "DeadlineExceeded",
        "exit_code": 137,
        "stdout_truncated": True,
        "stderr_truncated": False,
    }
    assert texts(events) == "x" * 100


def test_without_follow_a_running_task_returns_what_exists_and_closes(live: Live) -> None:
    task_id = live.running()
    live.chunk(task_id, "stdout", b"so far\n")

    began = time.monotonic()
    events = live.logs(task_id).until_closed(within=2.0)

    assert [(e.kind, e.data["text"]) for e in events] == [("output", "so far\n")]
    assert time.monotonic() - began < 2.0


def test_without_follow_a_task_with_no_output_yet_closes_empty(live: Live) -> None:
    task_id = live.submit()

    assert live.logs(task_id).until_closed(within=2.0) == []


def test_only_the_current_attempts_output_is_shown(live: Live) -> None:
    task_id = live.running()
    live.chunk(task_id, "stdout", b"attempt 1\n", attempt=1)
    with live.db.write() as session:  # requeued by an admin: attempt 2 ran and succeeded
        session.execute(update(Task).where(col(Task.id) == task_id).values(attempt=2))
        session.commit()
    live.chunk(task_id, "stdout", b"attempt 2\n", attempt=2)
    step(
        live.db,
        task_id,
        Phase.RUNNING,
        Phase.SUCCEEDED,
        Reason.COMPLETED,
        attempt=2,
        exit_code=0,
        stdout="attempt 2\n",
        finished_at=utcnow(),
    )

    events = live.logs(task_id).until_closed()

    assert texts(events) == "attempt 2\n"
    assert events[-1].kind == "end"


# --- following --------------------------------------------------------------------------------


def test_follow_delivers_new_chunks_as_they_are_stored_then_ends_with_the_task(live: Live) -> None:
    task_id = live.running()
    live.chunk(task_id, "stdout", b"first\n")
    stream = live.logs(task_id, {"follow": "true"})
    assert texts(stream.outputs(1)) == "first\n"

    stream.quiet_for(0.5)  # nothing new: the stream stays open, with heartbeats
    delays = []
    for n in range(3):
        stored_at = time.monotonic()
        seq = live.chunk(task_id, "stdout", b"tick %d\n" % n)
        [event] = stream.outputs(1, within=2.0)
        delays.append(event.arrived - stored_at)
        assert (event.id, event.data["text"]) == (str(seq), f"tick {n}\n")
    assert max(delays) < 1.0, f"chunks took {delays} s to reach the follower"

    live.finish(task_id, stdout="first\ntick 0\ntick 1\ntick 2\n")
    rest = stream.until_closed(within=3.0)
    assert [e.kind for e in rest] == ["end"]
    assert rest[0].data["phase"] == "Succeeded"
    print(f"chunk stored -> follower received: {', '.join(f'{d * 1000:.0f}' for d in delays)} ms")


def test_follow_on_a_pending_task_waits_for_its_first_output(live: Live) -> None:
    task_id = live.submit()
    stream = live.logs(task_id, {"follow": "true"})
    stream.quiet_for(0.4)

    step(live.db, task_id, Phase.PENDING, Phase.SCHEDULED, Reason.SCHEDULED)
    step(live.db, task_id, Phase.SCHEDULED, Phase.RUNNING, Reason.STARTED)
    live.chunk(task_id, "stderr", b"starting\n")
    assert [(e.data["stream"], e.data["text"]) for e in stream.outputs(1)] == [
        ("stderr", "starting\n")
    ]

    live.finish(task_id, Phase.FAILED, Reason.NON_ZERO_EXIT, exit_code=2, stderr="starting\n")
    [end] = stream.until_closed()
    assert (end.kind, end.data["phase"], end.data["exit_code"]) == ("end", "Failed", 2)


def test_follow_of_a_finished_task_replays_and_ends_at_once(live: Live) -> None:
    task_id = live.running()
    live.chunk(task_id, "stdout", b"done\n")
    live.finish(task_id, stdout="done\n")

    events = live.logs(task_id, {"follow": "true"}).until_closed(within=2.0)

    assert [e.kind for e in events] == ["output", "end"]
    assert texts(events) == "done\n"


def test_many_chunks_arrive_complete_and_in_order(live: Live) -> None:
    task_id = live.running()
    expected = [live.chunk(task_id, "stdout", b"%d\n" % i) for i in range(450)]
    live.finish(task_id, stdout="".join(f"{i}\n" for i in range(450)))

    events = live.logs(task_id).until_closed()

    assert ids(events) == expected
    assert texts(events) == "".join(f"{i}\n" for i in range(450))
    assert events[-1].kind == "end"


# --- resuming ---------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["last-event-id", "since"])
def test_a_resume_starts_after_that_chunk(live: Live, how: str) -> None:
    task_id = live.running()
    seqs = [live.chunk(task_id, "stdout", b"%d\n" % i) for i in range(5)]
    live.finish(task_id, stdout="0\n1\n2\n3\n4\n")

    if how == "since":
        stream = live.logs(task_id, {"since": seqs[1]})
    else:
        stream = live.logs(task_id, headers={"Last-Event-ID": str(seqs[1])})
    events = stream.until_closed()

    assert ids(events) == seqs[2:]
    assert texts(events) == "2\n3\n4\n"
    assert events[-1].kind == "end"


def test_a_resumed_follow_repeats_nothing_and_misses_nothing(live: Live) -> None:
    task_id = live.running()
    for i in range(3):
        live.chunk(task_id, "stdout", b"line %d\n" % i)
    first = live.logs(task_id, {"follow": "true"})
    seen = first.outputs(3)
    first.close()  # the connection drops; the task goes on printing
    for i in range(3, 6):
        live.chunk(task_id, "stdout", b"line %d\n" % i)

    second = live.logs(task_id, {"follow": "true"}, {"Last-Event-ID": seen[-1].id or ""})
    seen += second.outputs(3)
    live.chunk(task_id, "stdout", b"line 6\n")
    seen += second.outputs(1)
    live.finish(task_id, stdout="".join(f"line {i}\n" for i in range(7)))
    end = second.until_closed()

    assert texts(seen) == "".join(f"line {i}\n" for i in range(7))
    assert ids(seen) == sorted(set(ids(seen)))
    assert [e.kind for e in end] == ["end"]


def test_a_resume_after_the_last_chunk_of_a_finished_task_only_ends(live: Live) -> None:
    task_id = live.running()
    last = live.chunk(task_id, "stdout", b"all of it\n")
    live.finish(task_id, stdout="all of it\n")

    events = live.logs(task_id, headers={"Last-Event-ID": str(last)}).until_closed()

    assert [e.kind for e in events] == ["end"]


# --- filtering and decoding -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stream", "expected"),
    [
        ("stderr", "err 1\nerr 2\n"),
        ("stdout", "out 1\nout 2\n"),
    ],
)
def test_stream_filter_keeps_one_stream(live: Live, stream: str, expected: str) -> None:
    task_id = live.running()
    live.chunk(task_id, "stdout", b"out 1\n")
    live.chunk(task_id, "stderr", b"err 1\n")
    live.chunk(task_id, "stdout", b"out 2\n")
    live.chunk(task_id, "stderr", b"err 2\n")
    live.finish(task_id, stdout="out 1\nout 2\n", stderr="err 1\nerr 2\n")

    events = live.logs(task_id, {"stream": stream}).until_closed()

    assert {e.data["stream"] for e in events if e.kind == "output"} == {stream}
    assert texts(events) == expected
    assert events[-1].kind == "end"


def test_stream_filter_while_following(live: Live) -> None:
    task_id = live.running()
    stream = live.logs(task_id, {"follow": "true", "stream": "stderr"})
    live.chunk(task_id, "stdout", b"not this\n")
    live.chunk(task_id, "stderr", b"this\n")

    [event] = stream.outputs(1)
    assert (event.data["stream"], event.data["text"]) == ("stderr", "this\n")
    live.finish(task_id, stdout="not this\n", stderr="this\n")
    assert [e.kind for e in stream.until_closed()] == ["end"]


def test_a_character_split_across_chunks_is_decoded_whole(live: Live) -> None:
    task_id = live.running()
    smile = "😀".encode()
    live.chunk(task_id, "stdout", b"caf\xc3")
    live.chunk(task_id, "stderr", b"\xe2\x82")  # another stream's split does not interfere
    live.chunk(task_id, "stdout", b"\xa9 " + smile[:1])
    live.chunk(task_id, "stderr", b"\xac\n")
    live.chunk(task_id, "stdout", smile[1:3])
    live.chunk(task_id, "stdout", smile[3:] + b"\n")
    live.finish(task_id, stdout="café 😀\n", stderr="€\n")

    events = live.logs(task_id).until_closed()

    assert texts(events, "stdout") == "café 😀\n"
    assert texts(events, "stderr") == "€\n"
    assert not any("\ufffd" in e.data["text"] for e in events if e.kind == "output")


@pytest.mark.parametrize(
    ("pieces", "resume_after"),
    [
        pytest.param([b"caf\xc3", b"\xa9\n"], 0, id="two-byte-character-in-halves"),
        pytest.param([b"smile \xf0\x9f", b"\x98\x80\n"], 0, id="emoji-in-halves"),
        pytest.param(
            [b"smile \xf0", b"\x9f", b"\x98", b"\x80\n"],
            1,
            id="emoji-byte-by-byte-resumed-after-its-second-byte",
        ),
        pytest.param(
            [b"smile \xf0", b"\x9f", b"\x98", b"\x80\n"],
            2,
            id="emoji-byte-by-byte-resumed-after-its-third-byte",
        ),
    ],
)
def test_a_resume_inside_a_character_decodes_it_whole(
    live: Live, pieces: list[bytes], resume_after: int
) -> None:
    # A client that dropped right after a chunk holding part of a character had been shown
    # the text before that character; the resumed stream must go on with the character, not
    # with replacement characters.
    task_id = live.running()
    seqs = [live.chunk(task_id, "stdout", piece) for piece in pieces]
    whole = b"".join(pieces).decode()
    live.finish(task_id, stdout=whole)

    before = live.logs(task_id, {"since": 0}).until_closed()
    after = live.logs(task_id, headers={"Last-Event-ID": str(seqs[resume_after])}).until_closed()

    assert texts(before) == whole
    shown_before = texts([e for e in before if e.id and int(e.id) <= seqs[resume_after]])
    assert shown_before + texts(after) == whole


def test_bytes_that_are_not_utf8_are_replaced_not_dropped(live: Live) -> None:
    task_id = live.running()
    live.chunk(task_id, "stdout", b"bad \xff byte\n")
    live.finish(task_id, stdout="bad \ufffd byte\n")

    assert texts(live.logs(task_id).until_closed()) == "bad \ufffd byte\n"


# --- compacted output -------------------------------------------------------------------------


def compact(live: Live, monkeypatch: pytest.MonkeyPatch) -> None:
    """Compact old chunks, as the controller's passes do every minute."""
    compact_history(live.db, live.settings, utcnow())


def chunk_count(db: Database, task_id: str) -> int:
    with db.read() as session:
        return len(list(session.exec(select(OutputChunk).where(OutputChunk.task_id == task_id))))


def test_a_long_finished_task_whose_chunks_were_compacted_shows_its_final_output(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = live.running()
    live.chunk(old, "stdout", b"old out\n")
    live.chunk(old, "stderr", b"old err\n")
    live.finish(
        old,
        Phase.FAILED,
        Reason.NON_ZERO_EXIT,
        exit_code=1,
        stdout="old out\n",
        stderr="old err\n",
        ago=3600,
    )
    recent = live.running()
    live.chunk(recent, "stdout", b"recent\n")
    live.finish(recent, stdout="recent\n")
    still_running = live.running()
    live.chunk(still_running, "stdout", b"going\n")

    compact(live, monkeypatch)

    assert chunk_count(live.db, old) == 0
    assert chunk_count(live.db, recent) == 1
    assert chunk_count(live.db, still_running) == 1

    events = live.logs(old).until_closed()
    assert [(e.kind, e.data.get("stream"), e.data.get("text")) for e in events] == [
        ("output", "stdout", "old out\n"),
        ("output", "stderr", "old err\n"),
        ("end", None, None),
    ]
    assert all(e.id is None and e.data.get("seq") is None for e in events)
    assert events[-1].data["phase"] == "Failed"
    assert texts(live.logs(old, {"stream": "stderr"}).until_closed()) == "old err\n"
    assert texts(live.logs(old, {"follow": "true"}).until_closed()) == "old out\nold err\n"

    assert ids(live.logs(recent).until_closed()) != []
    assert texts(live.logs(still_running).until_closed(within=2.0)) == "going\n"


# --- errors -----------------------------------------------------------------------------------


def test_an_unknown_task_is_404(live: Live) -> None:
    response = live.http.get("/tasks/no-such-task/logs")
    assert response.status_code == 404
    assert "no-such-task" in response.json()["detail"]
    assert live.http.get("/tasks/no-such-task/logs", params={"follow": "true"}).status_code == 404


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("abc", id="letters"),
        pytest.param("-1", id="negative"),
        pytest.param("1.5", id="fraction"),
        pytest.param("", id="empty"),
        pytest.param("12a", id="trailing-junk"),
    ],
)
def test_a_bad_last_event_id_is_422(live: Live, value: str) -> None:
    task_id = live.submit()
    response = live.http.get(f"/tasks/{task_id}/logs", headers={"Last-Event-ID": value})
    assert response.status_code == 422
    assert "Last-Event-ID" in json.dumps(response.json()["detail"])


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"stream": "stdin"}, id="unknown-stream"),
        pytest.param({"since": "-1"}, id="negative-since"),
        pytest.param({"follow": "maybe"}, id="follow-not-a-bool"),
    ],
)
def test_bad_query_parameters_are_422(live: Live, params: dict[str, str]) -> None:
    task_id = live.submit()
    response = live.http.get(f"/tasks/{task_id}/logs", params=params)
    assert response.status_code == 422
