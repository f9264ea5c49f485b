"""How the CLI shows things: ages, sizes, tables, transition lines, the YAML-like dump, and the
progress line of a waiting submit."""

import io
from datetime import UTC, datetime

import pytest
from cli_support import make_task

from taskyard.commands.output import (
    Progress,
    age,
    arrow,
    format_bytes,
    table,
    tasks_table,
    transition_line,
    yamlish,
)

NOW = datetime(2026, 11, 27, 22, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(("created", "shown"), [
    pytest.param("2026-11-27T22:00:00Z", "0s", id="now"),
    pytest.param("2026-11-27T21:59:55.9Z", "4s", id="seconds-round-down"),
    pytest.param("2026-11-27T21:59:01Z", "59s", id="under-a-minute"),
    pytest.param("2026-11-27T21:59:00Z", "1m", id="a-minute"),
    pytest.param("2026-11-27T21:57:00Z", "3m", id="minutes"),
    pytest.param("2026-11-27T21:00:01Z", "59m", id="under-an-hour"),
    pytest.param("2026-11-27T20:00:00Z", "2h", id="hours"),
    pytest.param("2026-11-26T22:00:00Z", "1d", id="a-day"),
    pytest.param("2026-11-17T22:00:00+00:00", "10d", id="days-offset-form"),
    pytest.param("2026-11-27T22:00:05Z", "0s", id="clock-skew-never-negative"),
    pytest.param("2026-11-27T21:59:50", "10s", id="naive-is-utc"),
    pytest.param(None, "<unknown>", id="unset"),
    pytest.param("yesterday", "<unknown>", id="garbage"),
])
def test_age(created: str | None, shown: str) -> None:
    assert age(created, NOW) == shown


@pytest.mark.parametrize(("count", "shown"), [
    (0, "0B"), (512, "512B"), (1024**2, "1MB"), (256 * 1024**2, "256MB"),
    (1024**3, "1GB"), (int(1.5 * 1024**3), "1.5GB"), (25_000_000_000, "23.3GB"),
    ("n/a", "n/a"),
])
def test_format_bytes(count: object, shown: str) -> None:
    assert format_bytes(count) == shown


def test_table_aligns_columns_three_spaces_apart() -> None:
    assert table(["A", "LONGER"], [["xyz", "1"], ["q", ""]]).splitlines() == [
        "A     LONGER",
        "xyz   1",
        "q",
    ]


def test_tasks_table_wide_adds_columns() -> None:
    task = make_task("abc", "Running", reason="Started", message="x" * 80,
                     assigned={"cpus": [0, 1], "gpus": []})
    header, row = tasks_table([task], NOW, wide=True).splitlines()  # type: ignore[list-item]
    assert header.split() == ["ID", "PHASE", "REASON", "CPU", "GPU", "RAM", "STORAGE",
                              "ATTEMPT", "ASSIGNED", "AGE", "MESSAGE"]
    assert "cpus=0,1 gpus=-" in row
    assert row.endswith("x" * 57 + "...")


def test_transition_line_reads_left_to_right() -> None:
    event = {"seq": 12, "task_id": "abc", "from_phase": "Running", "to_phase": "Succeeded",
             "reason": "Completed", "message": "exited with code 0",
             "at": "2026-11-27T22:00:01.250Z"}
    line = transition_line(event)  # type: ignore[arg-type]
    seq, clock, task, source, to, target, reason, *message = line.split()
    assert (seq, task, source, to, target, reason) == ("12", "abc", "Running", "→", "Succeeded",
                                                       "Completed")
    assert " ".join(message) == "exited with code 0"
    assert clock.endswith(":01.250")
    assert transition_line(event, to="->").count("->") == 1  # type: ignore[arg-type]


def test_arrow_falls_back_where_the_terminal_cannot_show_it() -> None:
    ascii_out = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    utf8_out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    assert (arrow(ascii_out), arrow(utf8_out)) == ("->", "→")


def test_yamlish_keeps_code_and_output_readable() -> None:
    task = make_task("abc", "Succeeded", stdout="line 1\nline 2\n", result="ok")
    task["spec"]["code"] = "for i in range(2):\n    print(i)"
    text = yamlish(task)
    assert "id: abc\n" in text
    assert "  code: |-\n    for i in range(2):\n        print(i)\n" in text
    assert "  stdout: |\n    line 1\n    line 2\n" in text
    assert "  assigned:\n    cpus: []\n" in text
    assert "  stdin: null\n" in text
    assert '  ram: 256MB\n' in text
    assert yamlish({"a": "true", "b": "x: y", "n": "12", "c": [{"k": 1}, {"k": 2}]}) == (
        'a: "true"\nb: "x: y"\nn: "12"\nc:\n  - k: 1\n  - k: 2')


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_off_a_terminal_prints_one_line_per_change() -> None:
    stream, clock = io.StringIO(), Clock()
    progress = Progress(stream, "abc", started=100.0, clock=clock, tty=False)
    pending = make_task("abc", "Pending", reason="Unschedulable",
                        message="Insufficient cpu: requested 2, free 0")["status"]
    progress.show(pending)
    clock.now = 101
    progress.show(pending)  # no change: no line
    clock.now = 102.5
    progress.show(make_task("abc", "Running", reason="Started")["status"])
    progress.done()
    assert stream.getvalue().splitlines() == [
        "task/abc: Pending after 0.0s (Unschedulable: Insufficient cpu: requested 2, free 0)",
        "task/abc: Running after 2.5s",
    ]


def test_progress_on_a_terminal_rewrites_one_line() -> None:
    stream, clock = io.StringIO(), Clock()
    progress = Progress(stream, "abc", started=100.0, clock=clock, tty=True)
    progress.show(make_task("abc", "Running", reason="Started")["status"])
    clock.now = 103
    progress.show(make_task("abc", "Succeeded", reason="Completed")["status"])
    progress.done()
    text = stream.getvalue()
    assert text.count("\n") == 1 and text.endswith("task/abc: Succeeded after 3.0s\n")
    assert text.count("\r\x1b[K") == 3
