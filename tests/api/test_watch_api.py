"""GET /watch (Server-Sent Events of phase transitions) through the real app, served by uvicorn
in a thread over a real SQLite file, with no controller running: the test writes transitions
the way the controller does (`controller.status.move`).

A watch never ends by itself unless it watches one task, so every read here is bounded: httpx
gives up on a read after a few seconds, and each helper fails the test when what it waits for
has not arrived by its deadline. Heartbeats come every 0.2 s.
"""

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
from live_server import serving
from sqlmodel import col, delete, select

import api.watch
from api.auth import Caller
from controller.status import move
from models.clock import utcnow
from models.database import Database, open_database
from models.phases import Phase, Reason
from models.schemas import TransitionRead
from models.settings import Settings
from models.tables import TRANSITIONS_COMPACTED_THROUGH, Meta, Transition

EVENT_KEYS = {
    "seq",
    "task_id",
    "from_phase",
    "to_phase",
    "reason",
    "message",
    "at",
    "resource_version",
}
TASK = {
    "task_type": "execute_code",
    "code": "print(1)",
    "resources": {"cpu": "1", "gpu": "0", "ram": "64MB", "storage": "100MB"},
}
READ_TIMEOUT = 5.0


# --- a live server ----------------------------------------------------------------------------


@dataclass
class Live:
    url: str
    db: Database
    http: httpx.Client
    watches: list["Watch"] = field(default_factory=list)

    def submit(self) -> str:
        response = self.http.post("/tasks", json=TASK)
        assert response.status_code == 201, response.text
        task_id: str = response.json()["id"]
        return task_id

    def events(self, task_id: str) -> list[dict[str, Any]]:
        response = self.http.get(f"/tasks/{task_id}/events")
        assert response.status_code == 200
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    def all_seqs(self) -> list[int]:
        with self.db.read() as session:
            return [
                t.seq or 0 for t in session.exec(select(Transition).order_by(col(Transition.seq)))
            ]

    def watch(
        self, params: dict[str, Any] | None = None, headers: dict[str, str] | None = None
    ) -> "Watch":
        watch = Watch(self.http, params or {}, headers or {})
        self.watches.append(watch)
        return watch


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    db = open_database(database_url)
    yield db
    db.dispose()


@pytest.fixture
def live(tmp_path: Path, database: Database) -> Iterator[Live]:
    settings = Settings(data_dir=tmp_path, watch_heartbeat_seconds=0.2)
    with (
        serving(settings, database) as url,
        httpx.Client(base_url=url, timeout=READ_TIMEOUT) as http,
    ):
        result = Live(url, database, http)
        try:
            yield result
        finally:
            for watch in result.watches:
                watch.close()


# --- reading Server-Sent Events ---------------------------------------------------------------


@dataclass
class Frame:
    comments: list[str]
    fields: dict[str, str]


class Watch:
    """One open GET /watch, read a frame at a time."""

    def __init__(self, http: httpx.Client, params: dict[str, Any], headers: dict[str, str]) -> None:
        self._context = http.stream("GET", "/watch", params=params, headers=headers)
        self.response = self._context.__enter__()
        self._lines = self.response.iter_lines()
        self.ended = False
        self.comments: list[str] = []

    def close(self) -> None:
        self._context.__exit__(None, None, None)

    def frame(self) -> Frame | None:
        """The next frame, or None when the server ended the stream."""
        comments: list[str] = []
        fields: dict[str, str] = {}
        for line in self._lines:
            if line == "":
                if comments or fields:
                    return Frame(comments, fields)
                continue
            if line.startswith(":"):
                comments.append(line)
                self.comments.append(line)
                continue
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
        self.ended = True
        return None

    def next_events(self, count: int, within: float = 5.0) -> list[dict[str, Any]]:
        """The next `count` transition events (heartbeats skipped), each checked for shape."""
        deadline = time.monotonic() + within
        events: list[dict[str, Any]] = []
        while len(events) < count:
            assert time.monotonic() < deadline, f"got {len(events)} of {count} events: {events}"
            frame = self.frame()
            assert frame is not None, f"stream ended after {len(events)} of {count} events"
            if frame.fields:
                events.append(event_of(frame))
        return events

    def until_end(self, within: float = 5.0) -> list[dict[str, Any]]:
        """Every event up to the end of the stream, which must come within `within` s."""
        deadline = time.monotonic() + within
        events: list[dict[str, Any]] = []
        while True:
            assert time.monotonic() < deadline, f"stream still open after {events}"
            frame = self.frame()
            if frame is None:
                return events
            if frame.fields:
                events.append(event_of(frame))

    def quiet_for(self, seconds: float) -> list[str]:
        """Read for `seconds`; fail on any event; return the comment lines seen."""
        deadline = time.monotonic() + seconds
        seen: list[str] = []
        while time.monotonic() < deadline:
            frame = self.frame()
            assert frame is not None, "stream ended"
            assert not frame.fields, f"unexpected event {frame.fields}"
            seen += frame.comments
        return seen


def event_of(frame: Frame) -> dict[str, Any]:
    assert frame.fields["event"] == "transition"
    data: dict[str, Any] = json.loads(frame.fields["data"])
    assert set(data) == EVENT_KEYS
    assert frame.fields["id"] == str(data["seq"])
    return data


# --- writing transitions as the controller does -----------------------------------------------


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


def run_through(
    db: Database,
    task_id: str,
    end: Phase = Phase.SUCCEEDED,
    reason: Reason = Reason.COMPLETED,
    *,
    attempt: int = 1,
    start: Phase = Phase.PENDING,
) -> None:
    step(db, task_id, start, Phase.SCHEDULED, Reason.SCHEDULED, attempt=attempt)
    step(db, task_id, Phase.SCHEDULED, Phase.RUNNING, Reason.STARTED, attempt=attempt)
    step(db, task_id, Phase.RUNNING, end, reason, attempt=attempt)


def lifecycle(events: list[dict[str, Any]]) -> list[tuple[str | None, str]]:
    return [(e["from_phase"], e["to_phase"]) for e in events]


SUCCEEDED_LIFE = [
    (None, "Pending"),
    ("Pending", "Scheduled"),
    ("Scheduled", "Running"),
    ("Running", "Succeeded"),
]


# --- the stream -------------------------------------------------------------------------------


def test_a_watch_streams_each_transition_as_an_event(live: Live) -> None:
    watch = live.watch()
    assert watch.response.status_code == 200
    assert watch.response.headers["content-type"].startswith("text/event-stream")
    assert watch.response.headers["cache-control"] == "no-cache"

    task_id = live.submit()
    run_through(live.db, task_id)
    events = watch.next_events(4)

    assert lifecycle(events) == SUCCEEDED_LIFE
    assert [e["reason"] for e in events] == ["Created", "Scheduled", "Started", "Completed"]
    assert {e["task_id"] for e in events} == {task_id}
    assert all(e["at"].endswith("Z") for e in events)
    # The same transitions as the list, with the task's resource_version at each.
    assert events == live.events(task_id)
    versions = [e["resource_version"] for e in events]
    assert versions == sorted(versions) and len(set(versions)) == 4
    assert versions[-1] == live.http.get(f"/tasks/{task_id}").json()["resource_version"]
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == 4


def test_a_watch_of_all_tasks_starts_from_now(live: Live) -> None:
    old = live.submit()
    run_through(live.db, old)
    watch = live.watch()

    new = live.submit()
    first = watch.next_events(1)[0]

    assert first["task_id"] == new
    assert first["seq"] == max(live.all_seqs())


def test_events_of_many_tasks_arrive_in_commit_order(live: Live) -> None:
    watch = live.watch()
    ids = [live.submit() for _ in range(3)]
    for task_id in ids:
        step(live.db, task_id, Phase.PENDING, Phase.SCHEDULED, Reason.SCHEDULED)
    for task_id in reversed(ids):
        step(live.db, task_id, Phase.SCHEDULED, Phase.RUNNING, Reason.STARTED)

    events = watch.next_events(9)

    assert [e["seq"] for e in events] == live.all_seqs()
    assert [e["task_id"] for e in events[-3:]] == list(reversed(ids))


def test_heartbeat_comments_keep_an_idle_watch_alive(live: Live) -> None:
    watch = live.watch()

    comments = watch.quiet_for(1.0)

    assert comments[0] == ": watching transitions"
    assert comments.count(": keepalive") >= 3


# --- one task ---------------------------------------------------------------------------------


def test_a_task_watch_replays_its_history_and_ends(live: Live) -> None:
    other = live.submit()
    task_id = live.submit()
    step(live.db, other, Phase.PENDING, Phase.SCHEDULED, Reason.SCHEDULED)
    run_through(live.db, task_id)
    step(live.db, other, Phase.SCHEDULED, Phase.RUNNING, Reason.STARTED)

    events = live.watch({"task_id": task_id}).until_end()

    assert events == live.events(task_id)
    assert lifecycle(events) == SUCCEEDED_LIFE


def test_a_task_watch_follows_it_live_and_ends_after_its_terminal_transition(
    live: Live,
) -> None:
    task_id = live.submit()
    other = live.submit()
    watch = live.watch({"task_id": task_id})
    assert lifecycle(watch.next_events(1)) == [(None, "Pending")]

    step(live.db, task_id, Phase.PENDING, Phase.SCHEDULED, Reason.SCHEDULED)
    step(live.db, other, Phase.PENDING, Phase.SCHEDULED, Reason.SCHEDULED)
    step(live.db, task_id, Phase.SCHEDULED, Phase.RUNNING, Reason.STARTED)
    step(live.db, task_id, Phase.RUNNING, Phase.FAILED, Reason.NON_ZERO_EXIT)
    rest = watch.until_end()

    assert lifecycle(rest) == [
        ("Pending", "Scheduled"),
        ("Scheduled", "Running"),
        ("Running", "Failed"),
    ]
    assert {e["task_id"] for e in rest} == {task_id}
    assert rest[-1]["reason"] == "NonZeroExit"


def test_a_task_watch_replays_a_requeued_task_past_its_first_ending(live: Live) -> None:
    """An admin requeued the task after it succeeded: its history goes on past the first
    terminal transition, and the watch must show it, not end at the old outcome."""
    task_id = live.submit()
    run_through(live.db, task_id)
    with live.db.write() as session:
        assert move(
            session,
            task_id=task_id,
            from_phase=Phase.SUCCEEDED,
            at_attempt=1,
            to_phase=Phase.PENDING,
            reason=Reason.ADMIN_RESET,
            message="requeued by an admin as attempt 2",
            now=utcnow(),
            attempt=2,
        )
    run_through(live.db, task_id, attempt=2)

    events = live.watch({"task_id": task_id}).until_end()

    assert lifecycle(events) == [*SUCCEEDED_LIFE, ("Succeeded", "Pending"), *SUCCEEDED_LIFE[1:]]
    assert events == live.events(task_id)


# --- resuming ---------------------------------------------------------------------------------


def history(live: Live, tasks: int = 3) -> list[str]:
    ids = [live.submit() for _ in range(tasks)]
    for task_id in ids:
        run_through(live.db, task_id)
    return ids


@pytest.mark.parametrize("how", ["last-event-id", "since"])
def test_a_resumed_watch_gets_exactly_what_came_after(live: Live, how: str) -> None:
    history(live)
    seqs = live.all_seqs()
    after = seqs[4]
    if how == "last-event-id":
        watch = live.watch(headers={"Last-Event-ID": str(after)})
    else:
        watch = live.watch({"since": after})

    replayed = watch.next_events(len(seqs) - 5)
    assert [e["seq"] for e in replayed] == seqs[5:]

    # Nothing else was owed: the next event is the next transition made.
    marker = live.submit()
    following = watch.next_events(1)[0]
    assert following["task_id"] == marker
    assert following["seq"] == max(live.all_seqs())


def test_last_event_id_wins_over_since(live: Live) -> None:
    history(live, 2)
    seqs = live.all_seqs()

    watch = live.watch({"since": seqs[0]}, headers={"Last-Event-ID": str(seqs[5])})

    assert [e["seq"] for e in watch.next_events(2)] == seqs[6:]


def test_since_zero_replays_everything(live: Live) -> None:
    history(live, 2)

    events = live.watch({"since": 0}).next_events(8)

    assert [e["seq"] for e in events] == live.all_seqs()


def test_a_reconnect_while_tasks_keep_changing_misses_nothing_and_repeats_nothing(
    live: Live,
) -> None:
    first = live.watch()
    ids = [live.submit() for _ in range(12)]
    closed, unwatched, reconnecting, stop = (threading.Event() for _ in range(4))
    failures: list[BaseException] = []

    def controller() -> None:
        # Tasks move while the first watch reads, while nobody watches, and while the second
        # watch connects.
        try:
            for n, task_id in enumerate(ids):
                if n == 4:
                    assert closed.wait(20), "the first watch was not closed"
                elif n == 8:
                    unwatched.set()
                    assert reconnecting.wait(20), "nobody reconnected"
                run_through(live.db, task_id)
        except BaseException as exc:  # reported by the test below
            failures.append(exc)
        finally:
            unwatched.set()
            stop.set()

    writer = threading.Thread(target=controller)
    writer.start()
    try:
        seen = first.next_events(20)  # 12 Pending, then the moves of the first 4 tasks
        first.close()
        closed.set()
        assert unwatched.wait(20), "the writer did not go on"
        reconnecting.set()
        second = live.watch(headers={"Last-Event-ID": str(seen[-1]["seq"])})
        assert stop.wait(20), "the writer did not finish"
        expected = live.all_seqs()
        owed = len([s for s in expected if s > seen[-1]["seq"]])
        seen += second.next_events(owed)
    finally:
        closed.set()
        reconnecting.set()
        writer.join(20)
    assert not failures

    seqs = [e["seq"] for e in seen]
    assert seqs == expected
    assert len(set(seqs)) == len(seqs)
    second.quiet_for(0.4)


def test_a_slow_watcher_whose_buffer_overflows_still_gets_everything_once(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api.watch, "QUEUE_SIZE", 2)
    watch = live.watch()
    task_id = live.submit()
    assert watch.next_events(1)[0]["task_id"] == task_id
    with live.db.write() as session:
        for number in range(60):
            session.add(
                Transition(
                    task_id=task_id,
                    from_phase="Pending",
                    to_phase="Pending",
                    reason="Unschedulable",
                    message=f"note {number}",
                    resource_version=1,
                )
            )
        session.commit()

    events = watch.next_events(60)

    assert [e["message"] for e in events] == [f"note {n}" for n in range(60)]
    assert [e["seq"] for e in events] == live.all_seqs()[1:]
    watch.quiet_for(0.4)


# --- filters ----------------------------------------------------------------------------------


def test_the_phase_filter_sends_only_transitions_into_that_phase(live: Live) -> None:
    watch = live.watch({"phase": "Succeeded"})
    good, bad, late = live.submit(), live.submit(), live.submit()
    run_through(live.db, bad, Phase.FAILED, Reason.NON_ZERO_EXIT)
    run_through(live.db, good)

    first = watch.next_events(1)[0]
    run_through(live.db, late)
    second = watch.next_events(1)[0]

    assert (first["task_id"], first["to_phase"]) == (good, "Succeeded")
    assert (second["task_id"], second["to_phase"]) == (late, "Succeeded")


def test_task_and_phase_filters_combine(live: Live) -> None:
    task_id = live.submit()
    run_through(live.db, task_id)

    events = live.watch({"task_id": task_id, "phase": "Running"}).until_end()

    assert lifecycle(events) == [("Scheduled", "Running")]


def test_the_phase_filter_takes_any_case(live: Live) -> None:
    task_id = live.submit()
    run_through(live.db, task_id)

    events = live.watch({"task_id": task_id, "phase": "running"}).until_end()

    assert lifecycle(events) == [("Scheduled", "Running")]


def test_an_unknown_phase_is_422(live: Live) -> None:
    response = live.http.get("/watch", params={"phase": "Sleeping"})
    assert response.status_code == 422
    assert any(entry["loc"][-1] == "phase" for entry in response.json()["detail"])


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["abc", "-1", "1.5", "12x", ""])
def test_a_bad_last_event_id_is_422(live: Live, value: str) -> None:
    response = live.http.get("/watch", headers={"Last-Event-ID": value})
    assert response.status_code == 422
    assert "Last-Event-ID" in json.dumps(response.json()["detail"])


@pytest.mark.parametrize("value", ["-1", "x"])
def test_a_bad_since_is_422(live: Live, value: str) -> None:
    response = live.http.get("/watch", params={"since": value})
    assert response.status_code == 422
    assert any(entry["loc"][-1] == "since" for entry in response.json()["detail"])


def compact(live: Live, through: int) -> None:
    """Delete transitions up to `through` and record it, as the controller's compaction does."""
    with live.db.write() as session:
        session.execute(delete(Transition).where(col(Transition.seq) <= through))
        session.add(Meta(key=TRANSITIONS_COMPACTED_THROUGH, value=through))
        session.commit()


@pytest.mark.parametrize("how", ["since", "last-event-id"])
def test_resuming_from_compacted_history_is_410_gone(live: Live, how: str) -> None:
    history(live, 4)
    compact(live, 10)

    if how == "since":
        response = live.http.get("/watch", params={"since": 5})
    else:
        response = live.http.get("/watch", headers={"Last-Event-ID": "5"})

    assert response.status_code == 410
    detail = response.json()["detail"]
    assert "compacted" in detail and "10" in detail


def test_resuming_right_where_history_begins_is_fine(live: Live) -> None:
    history(live, 4)
    compact(live, 10)

    watch = live.watch({"since": 10})

    assert watch.response.status_code == 200
    assert [e["seq"] for e in watch.next_events(6)] == live.all_seqs()
    assert live.all_seqs()[0] == 11


def test_a_task_watch_after_compaction_replays_a_task_newer_than_it(live: Live) -> None:
    """Compaction removed old tasks' history; a task created since has all of its own."""
    history(live, 4)
    compact(live, 10)
    task_id = live.submit()
    run_through(live.db, task_id)

    watch = live.watch({"task_id": task_id})

    assert watch.response.status_code == 200, watch.response.read()
    assert lifecycle(watch.until_end()) == SUCCEEDED_LIFE


def test_a_watch_of_all_from_now_after_compaction_is_fine(live: Live) -> None:
    history(live, 4)
    compact(live, 10)

    watch = live.watch()
    task_id = live.submit()

    assert watch.response.status_code == 200
    assert watch.next_events(1)[0]["task_id"] == task_id


# --- what a watcher costs ---------------------------------------------------------------------


def watchers(live: Live) -> int:
    for line in live.http.get("/metrics").text.splitlines():
        if line.startswith("taskyard_watchers "):
            return int(line.split()[1])
    raise AssertionError("no taskyard_watchers line in /metrics")


def test_a_vanished_watcher_is_forgotten(live: Live) -> None:
    one, two = live.watch(), live.watch()
    one.quiet_for(0.1)
    two.quiet_for(0.1)
    assert watchers(live) == 2

    one.close()
    two.close()

    deadline = time.monotonic() + 3
    while watchers(live) != 0:
        assert time.monotonic() < deadline, "closed watches are still counted"
        time.sleep(0.05)


def test_a_finished_task_watch_is_forgotten(live: Live) -> None:
    task_id = live.submit()
    run_through(live.db, task_id)

    live.watch({"task_id": task_id}).until_end()

    deadline = time.monotonic() + 3
    while watchers(live) != 0:
        assert time.monotonic() < deadline, "an ended watch is still counted"
        time.sleep(0.05)


def test_transitions_queued_together_go_out_in_one_write(database: Database) -> None:
    """A burst of transitions costs each watcher one send; a task watch still stops at the
    task's ending, and what was queued after it is not sent."""
    feed = api.watch.TransitionFeed(database, 0.01)
    subscriber = feed.subscribe()
    phases = [
        ("Pending", "Scheduled"),
        ("Scheduled", "Running"),
        ("Running", "Succeeded"),
        ("Succeeded", "Pending"),
    ]  # the last: an admin requeue, after the ending
    for seq, (before, after) in enumerate(phases, start=1):
        event = TransitionRead(
            seq=seq,
            task_id="t1",
            from_phase=before,
            to_phase=after,
            reason="r",
            message="m",
            at="2026-11-28T00:00:00Z",
            resource_version=seq,
        )
        subscriber.queue.put_nowait((event, api.watch._frame(event)))

    sent: list[bytes] = []

    async def send(message: dict[str, Any]) -> None:
        assert message["type"] == "http.response.body" and message["more_body"]
        sent.append(message["body"])

    asyncio.run(
        api.watch._stream(
            send,
            feed,
            subscriber,
            database,
            0,
            "t1",
            None,  # type: ignore[arg-type]
            api.watch._Visibility(database, Caller(is_admin=True)),
        )
    )

    assert sent[0] == b": watching transitions\n\n"
    assert len(sent) == 2, sent
    assert [
        json.loads(line[5:])["to_phase"]
        for line in sent[1].split(b"\n")
        if line.startswith(b"data:")
    ] == ["Scheduled", "Running", "Succeeded"]
    assert feed.watchers == 0  # the stream let go of its subscription


class CountedWake(asyncio.Event):
    """A stream's wake event that counts the waits begun on it: a stream whose count went up
    has done what it was woken for and waits again."""

    def __init__(self) -> None:
        super().__init__()
        self.waits = 0

    async def wait(self) -> Literal[True]:
        self.waits += 1
        return await super().wait()


async def until(condition: Callable[[], bool], within: float = 5.0) -> None:
    """Let the event loop run until `condition` holds; fail the test after `within` seconds."""
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "the streams did not get there in time"
        await asyncio.sleep(0.001)


def test_a_transition_that_comes_during_a_fan_out_joins_it(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The feed wakes its watchers a slice at a time and looks for newer transitions between
    slices: a watcher not yet woken when the next one is read sends both in one write."""
    monkeypatch.setattr(api.watch, "WAKE_SLICE", 1)
    feed = api.watch.TransitionFeed(database, 3600)
    visibility = api.watch._Visibility(database, Caller(is_admin=True))

    def commit(message: str) -> None:
        with database.write() as session:
            session.add(
                Transition(
                    task_id="t1",
                    from_phase="Pending",
                    to_phase="Pending",
                    reason="Unschedulable",
                    message=message,
                    resource_version=1,
                )
            )
            session.commit()

    def messages(chunk: bytes) -> list[str]:
        return [
            json.loads(line[5:])["message"]
            for line in chunk.split(b"\n")
            if line.startswith(b"data:")
        ]

    async def fan_out() -> list[list[list[str]]]:
        writes: list[list[list[str]]] = [[], [], []]
        streams = []
        wakes = []
        for sent in writes:

            async def send(message: dict[str, Any], sent: list[list[str]] = sent) -> None:
                if messages(message["body"]):
                    sent.append(messages(message["body"]))

            subscriber = feed.subscribe()
            subscriber.wake = wake = CountedWake()
            wakes.append(wake)
            streams.append(
                asyncio.create_task(
                    api.watch._stream(
                        send,
                        feed,
                        subscriber,
                        database,
                        0,
                        None,
                        None,  # type: ignore[arg-type]
                        visibility,
                    )
                )
            )
        # Each stream has found nothing to replay and waits.
        await until(lambda: [wake.waits for wake in wakes] == [1, 1, 1])

        commit("first")
        await feed._publish_new()
        feed._wake_slice()  # the first watcher only
        await until(lambda: sum(wake.waits for wake in wakes) == 4)  # it sent, and waits again
        commit("second")
        await feed._publish_new()
        while feed._to_wake:
            waits = sum(wake.waits for wake in wakes)
            feed._wake_slice()
            await until(lambda waits=waits: sum(wake.waits for wake in wakes) == waits + 1)
        for stream in streams:
            stream.cancel()
        await asyncio.gather(*streams, return_exceptions=True)
        return writes

    writes = asyncio.run(fan_out())

    # The watcher woken first sent each on its own; the two others, both in one write.
    assert sorted(writes) == [[["first"], ["second"]], [["first", "second"]], [["first", "second"]]]
    assert feed.watchers == 0
