"""Live output on the real engine: GET /tasks/{id}/logs?follow=true against a real server
process shows a task's lines while it runs, in order, resumable without a repeat or a gap, and
keeps partial output of a task that times out or is cancelled.

Each read of a stream is bounded by httpx's read timeout and by the deadline of the helper
that reads it.
"""

import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
from harness import Client, Server, task_body

TICKER = (
    "import time\n"
    "for i in range(10):\n"
    "    print(f'line {i} {time.time():.6f}', flush=True)\n"
    "    time.sleep(0.2)\n"
)
TICKER_LINES = [f"line {i}" for i in range(10)]


@dataclass
class Event:
    kind: str
    id: int | None
    data: dict[str, Any]
    arrived: float  # wall clock (time.time()) when the event was read


@contextmanager
def logs(
    server: Server,
    task_id: str,
    *,
    follow: bool = True,
    stream: str | None = None,
    last_event_id: int | None = None,
) -> Iterator[Iterator[Event]]:
    """An open log stream, read one event at a time."""
    params: dict[str, str] = {"follow": "true" if follow else "false"}
    if stream is not None:
        params["stream"] = stream
    headers = {"Last-Event-ID": str(last_event_id)} if last_event_id is not None else {}
    with (
        httpx.Client(base_url=server.url, timeout=httpx.Timeout(10, read=20)) as http,
        http.stream("GET", f"/tasks/{task_id}/logs", params=params, headers=headers) as response,
    ):
        assert response.status_code == 200, response.read()

        def events() -> Iterator[Event]:
            fields: dict[str, str] = {}
            for line in response.iter_lines():
                if line == "":
                    if fields:
                        yield Event(
                            fields["event"],
                            int(fields["id"]) if "id" in fields else None,
                            json.loads(fields["data"]),
                            time.time(),
                        )
                    fields = {}
                elif not line.startswith(":"):
                    name, _, value = line.partition(":")
                    fields[name] = value.removeprefix(" ")

        yield events()


def read_until(events: Iterator[Event], done: Any, within: float) -> list[Event]:
    """Events until `done(events so far)` holds, which must happen within `within` s."""
    deadline = time.monotonic() + within
    seen: list[Event] = []
    for event in events:
        seen.append(event)
        if done(seen):
            return seen
        assert time.monotonic() < deadline, f"still waiting after {len(seen)} events"
    raise AssertionError(f"stream ended before it was done: {seen}")


def ended(seen: list[Event]) -> bool:
    return seen[-1].kind == "end"


def text_of(events: list[Event], stream: str | None = None) -> str:
    return "".join(
        e.data["text"] for e in events if e.kind == "output" and stream in (None, e.data["stream"])
    )


def at(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def difference(got: str, want: str) -> str:
    """Where the streamed text first differs from what the task printed."""
    same = next(
        (i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b),
        min(len(got), len(want)),
    )
    return (
        f"{len(got)} of {len(want)} characters, first difference at {same}: "
        f"streamed {got[max(same - 12, 0) : same + 12]!r}, "
        f"printed {want[max(same - 12, 0) : same + 12]!r}"
    )


def words(text: str) -> list[str]:
    """`line N` of each ticker line, without the time it was printed."""
    return [" ".join(line.split()[:2]) for line in text.splitlines()]


def test_a_followed_task_shows_its_lines_before_it_ends(server: Server, client: Client) -> None:
    task_id = client.submit(task_body(TICKER, timeout=30))["id"]
    with logs(server, task_id) as events:
        seen = read_until(events, ended, within=40)
    task = client.get(task_id)
    finished_at = at(task["status"]["finished_at"])

    # When each line arrived, against when the task printed it and when it was stored.
    outputs = [e for e in seen if e.kind == "output"]
    printed, arrival, stored = [], [], []
    pending = ""
    for event in outputs:
        pending += event.data["text"]
        *complete, pending = pending.split("\n")
        for line in complete:  # completed by this event
            match = re.fullmatch(r"line \d+ (\d+\.\d+)", line)
            if match:
                printed.append(float(match[1]))
                arrival.append(event.arrived)
                stored.append(at(event.data["at"]))
    assert arrival, f"no whole line arrived: {text_of(seen)!r}"
    first_early = finished_at - arrival[0]
    print_delays = sorted(a - p for a, p in zip(arrival, printed, strict=True))
    store_delays = sorted(a - s for a, s in zip(arrival, stored, strict=True))
    print(
        f"\n{len(arrival)} lines; the first arrived {first_early:.2f} s before the task "
        f"finished; printed -> received: median {print_delays[len(arrival) // 2] * 1000:.0f}"
        f" ms, max {print_delays[-1] * 1000:.0f} ms; `at` -> received: median "
        f"{store_delays[len(arrival) // 2] * 1000:.0f} ms, max {store_delays[-1] * 1000:.0f}"
        " ms"
    )

    assert words(text_of(seen)) == TICKER_LINES
    assert {e.data["stream"] for e in outputs} == {"stdout"}
    assert [e.id for e in outputs] == sorted({e.id for e in outputs if e.id is not None})
    assert seen[-1].data["phase"] == "Succeeded" and seen[-1].data["exit_code"] == 0
    assert text_of(seen) == task["status"]["stdout"]
    assert first_early > 1.0, "the first line did not arrive while the task was running"
    assert arrival[-1] - arrival[0] > 1.0, "the lines arrived all at once, not as printed"
    assert print_delays[-1] < 1.0, f"lines took {print_delays} s to arrive"


def test_a_reconnect_in_the_middle_repeats_nothing_and_misses_nothing(
    server: Server, client: Client
) -> None:
    task_id = client.submit(task_body(TICKER, timeout=30))["id"]
    with logs(server, task_id) as events:
        first = read_until(
            events,
            lambda seen: len(words(text_of(seen))) >= 3 and text_of(seen).endswith("\n"),
            within=30,
        )
    last = [e.id for e in first if e.id is not None][-1]
    time.sleep(0.5)  # the task goes on printing while nobody listens

    with logs(server, task_id, last_event_id=last) as events:
        second = read_until(events, ended, within=30)
    task = client.get(task_id)

    assert task["status"]["phase"] == "Succeeded"
    assert 3 <= len(words(text_of(first))) < 10, "the first connection saw the whole run"
    assert words(text_of(first) + text_of(second)) == TICKER_LINES
    assert text_of(first) + text_of(second) == task["status"]["stdout"]
    second_ids = [e.id for e in second if e.id is not None]
    assert second_ids and min(second_ids) > last


def test_a_timed_out_task_keeps_its_partial_output(server: Server, client: Client) -> None:
    code = (
        "import sys\n"
        "print('partial', flush=True)\n"
        "print('still going', file=sys.stderr, flush=True)\n"
        "while True: pass\n"
    )
    task_id = client.submit(task_body(code, timeout=2))["id"]
    with logs(server, task_id) as events:
        seen = read_until(events, ended, within=30)
    status = client.get(task_id)["status"]

    assert text_of(seen, "stdout") == "partial\n"
    assert text_of(seen, "stderr") == "still going\n"
    first = next(e for e in seen if e.kind == "output")
    assert seen[-1].arrived - first.arrived > 1.0, "the output only came with the ending"
    assert seen[-1].data["phase"] == "TimedOut"
    assert status["phase"] == "TimedOut" and status["reason"] == "DeadlineExceeded"
    assert status["stdout"] == "partial\n"
    assert "2 s timeout" in status["result"]


def test_a_cancelled_task_keeps_what_it_printed(server: Server, client: Client) -> None:
    code = "import time\nprint('before the cancel', flush=True)\ntime.sleep(60)\n"
    task_id = client.submit(task_body(code))["id"]
    with logs(server, task_id) as events:
        seen = read_until(events, lambda s: text_of(s) == "before the cancel\n", within=30)
        assert client.http.delete(f"/tasks/{task_id}").status_code == 202
        seen += read_until(events, ended, within=15)

    assert text_of(seen) == "before the cancel\n"
    assert seen[-1].data["phase"] == "Cancelled"
    assert client.get(task_id)["status"]["stdout"] == "before the cancel\n"


def test_stderr_comes_as_its_own_stream(server: Server, client: Client) -> None:
    code = (
        "import sys, time\n"
        "print('out 1', flush=True)\n"
        "print('err 1', file=sys.stderr, flush=True)\n"
        "time.sleep(0.3)\n"
        "print('out 2', flush=True)\n"
        "print('err 2', file=sys.stderr, flush=True)\n"
        "sys.exit(3)\n"
    )
    task_id = client.submit(task_body(code))["id"]
    with logs(server, task_id) as events:
        seen = read_until(events, ended, within=30)
    status = client.get(task_id)["status"]

    assert text_of(seen, "stdout") == "out 1\nout 2\n"
    assert text_of(seen, "stderr") == "err 1\nerr 2\n"  # and not the supervisor's report
    assert seen[-1].data == {
        "phase": "Failed",
        "reason": "NonZeroExit",
        "exit_code": 3,
        "stdout_truncated": False,
        "stderr_truncated": False,
    }
    assert status["stderr"] == "err 1\nerr 2\n"

    with logs(server, task_id, follow=False, stream="stderr") as events:
        only = list(events)
    assert {e.data["stream"] for e in only if e.kind == "output"} == {"stderr"}
    assert text_of(only) == "err 1\nerr 2\n"
    assert only[-1].kind == "end"


def test_the_start_of_a_quick_tasks_output_is_never_lost(server: Server, client: Client) -> None:
    # The first lines are printed before the controller can start reading the container;
    # they must still reach the stream. Several tasks, since missing them is a matter of timing.
    code = (
        "import sys\n"
        "print('first out', flush=True)\n"
        "print('first err', file=sys.stderr, flush=True)\n"
        "for i in range(500): print(i)\n"
    )
    expected = "first out\n" + "".join(f"{i}\n" for i in range(500))
    task_ids = [client.submit(task_body(code))["id"] for _ in range(6)]

    incomplete = []
    for task_id in task_ids:
        status = client.wait_for(task_id, timeout=60)["status"]
        assert status["phase"] == "Succeeded", status
        assert status["stdout"] == expected
        with logs(server, task_id, follow=False) as events:
            seen = list(events)
        assert seen[-1].kind == "end"
        for stream, want in (("stdout", expected), ("stderr", "first err\n")):
            got = text_of(seen, stream)
            if got != want:
                incomplete.append(f"{task_id} {stream}: {difference(got, want)}")
    assert not incomplete, "the stream lost output the task printed:\n" + "\n".join(incomplete)


def test_output_past_the_cap_is_cut_in_the_stream_too(server: Server, client: Client) -> None:
    cap = 1 << 20  # the server's default TASKYARD_OUTPUT_LIMIT_BYTES
    code = f"import sys\nsys.stdout.write('x' * ({cap} + 50000))\nsys.stdout.flush()\n"
    task_id = client.submit(task_body(code))["id"]
    with logs(server, task_id) as events:
        seen = read_until(events, ended, within=60)
    status = client.get(task_id)["status"]

    assert text_of(seen) == "x" * cap
    assert seen[-1].data["phase"] == "Succeeded"
    assert seen[-1].data["stdout_truncated"] is True
    assert status["stdout_truncated"] is True and len(status["stdout"]) == cap
