"""How the CLI shows things: ages, sizes, tables, transition lines, `-o yaml`, and the
progress line of a waiting submit."""

import io
import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import yaml
from cli_support import make_task, run_cli
from hypothesis import given, settings
from hypothesis import strategies as st

from taskyard.commands.output import (
    Progress,
    age,
    arrow,
    format_bytes,
    table,
    tasks_table,
    to_yaml,
    transition_line,
)

NOW = datetime(2026, 11, 27, 22, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("created", "shown"),
    [
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
    ],
)
def test_age(created: str | None, shown: str) -> None:
    assert age(created, NOW) == shown


@pytest.mark.parametrize(
    ("count", "shown"),
    [
        (0, "0B"),
        (512, "512B"),
        (1024**2, "1MB"),
        (256 * 1024**2, "256MB"),
        (1024**3, "1GB"),
        (int(1.5 * 1024**3), "1.5GB"),
        (25_000_000_000, "23.3GB"),
        ("n/a", "n/a"),
    ],
)
def test_format_bytes(count: object, shown: str) -> None:
    assert format_bytes(count) == shown


def test_table_aligns_columns_three_spaces_apart() -> None:
    assert table(["A", "LONGER"], [["xyz", "1"], ["q", ""]]).splitlines() == [
        "A     LONGER",
        "xyz   1",
        "q",
    ]


def test_tasks_table_wide_adds_columns() -> None:
    task = make_task(
        "abc", "Running", reason="Started", message="x" * 80, assigned={"cpus": [0, 1], "gpus": []}
    )
    header, row = tasks_table([task], NOW, wide=True).splitlines()  # type: ignore[list-item]
    assert header.split() == [
        "ID",
        "PHASE",
        "REASON",
        "CPU",
        "GPU",
        "RAM",
        "STORAGE",
        "ATTEMPT",
        "ASSIGNED",
        "AGE",
        "MESSAGE",
    ]
    assert "cpus=0,1 gpus=-" in row
    assert row.endswith("x" * 57 + "...")


def test_transition_line_reads_left_to_right() -> None:
    event = {
        "seq": 12,
        "task_id": "abc",
        "from_phase": "Running",
        "to_phase": "Succeeded",
        "reason": "Completed",
        "message": "exited with code 0",
        "at": "2026-11-27T22:00:01.250Z",
    }
    line = transition_line(event)  # type: ignore[arg-type]
    seq, clock, task, source, to, target, reason, *message = line.split()
    assert (seq, task, source, to, target, reason) == (
        "12",
        "abc",
        "Running",
        "→",
        "Succeeded",
        "Completed",
    )
    assert " ".join(message) == "exited with code 0"
    assert clock.endswith(":01.250")
    assert transition_line(event, to="->").count("->") == 1  # type: ignore[arg-type]


def test_arrow_falls_back_where_the_terminal_cannot_show_it() -> None:
    ascii_out = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    utf8_out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    assert (arrow(ascii_out), arrow(utf8_out)) == ("->", "→")


def test_to_yaml_keeps_code_and_output_readable() -> None:
    task = make_task("abc", "Succeeded", stdout="line 1\nline 2\n", result="ok")
    task["spec"]["code"] = "for i in range(2):\n    print(i)"
    text = to_yaml(task)
    assert "id: abc\n" in text
    assert "  code: |-\n    for i in range(2):\n        print(i)\n" in text
    assert "  stdout: |\n    line 1\n    line 2\n" in text
    assert "  assigned:\n    cpus: []\n" in text
    assert "  stdin: null\n" in text
    assert "  ram: 256MB\n" in text
    assert to_yaml({"a": "true", "b": "x: y", "n": "12", "c": [{"k": 1}, {"k": 2}]}) == (
        'a: "true"\nb: "x: y"\nn: "12"\nc:\n  - k: 1\n  - k: 2'
    )


TRICKY_TEXTS = [
    pytest.param("  indented\n    more\n", id="leading-spaces"),
    pytest.param("   one line", id="leading-spaces-one-line"),
    pytest.param("\x1b[31mred\x1b[0m\n", id="ansi-escapes"),
    pytest.param("\x1b[1mbold\x1b[0m\nand more\n", id="ansi-escapes-multi-line"),
    pytest.param("2026-01-01", id="date"),
    pytest.param(".inf", id="infinity"),
    pytest.param("yes", id="yaml-1.1-bool"),
    pytest.param("null", id="null"),
    pytest.param("0o17", id="octal"),
    pytest.param("line 1\nline 2\n", id="multi-line"),
    pytest.param("line 1\n\n\n", id="multi-line-trailing-blank-lines"),
    pytest.param("no final newline\nhere", id="multi-line-no-final-newline"),
    pytest.param("trailing  \nspaces \n", id="multi-line-trailing-spaces"),
    pytest.param("crlf\r\nnel\x85ls\u2028ps\u2029end\n", id="other-line-breaks"),
    pytest.param("key: value # not a comment\n- not a list\n", id="yaml-syntax"),
    pytest.param("tab\there, é →, \"quotes' \\", id="tabs-unicode-quotes"),
    pytest.param("", id="empty"),
]


def _serve(task: dict[str, Any]) -> Any:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/tasks":
            return httpx.Response(200, json={"items": [task], "next_cursor": None})
        return httpx.Response(200, json=task)

    return answer


@pytest.mark.parametrize("verb", [["get", "abc"], ["list"]], ids=["get", "list"])
@pytest.mark.parametrize("text", TRICKY_TEXTS)
def test_yaml_reads_back_as_exactly_the_json(verb: list[str], text: str) -> None:
    task = make_task("abc", "Failed", message=text, stdout=text, stderr=text, result=text)
    task["spec"]["code"] = text
    as_json = run_cli([*verb, "-o", "json"], _serve(task))
    as_yaml = run_cli([*verb, "-o", "yaml"], _serve(task))
    assert (as_json.code, as_yaml.code) == (0, 0)
    assert yaml.safe_load(as_yaml.out) == json.loads(as_json.out)
    assert yaml.safe_load(as_yaml.out)["status" if verb[0] == "get" else "items"]


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10,
)


@settings(max_examples=500, deadline=None)
@given(JSON_VALUES)
def test_yaml_of_any_json_value_reads_back_as_that_value(value: Any) -> None:
    # As the command line prints it: `Context.print` adds the final newline, which a literal
    # block ending the document needs to keep its own ("0\n" is "|\n  0\n").
    assert yaml.safe_load(to_yaml(value) + "\n") == value


def test_yaml_shows_multi_line_output_as_a_block_where_it_can() -> None:
    task = make_task(
        "abc", "Succeeded", stdout="  indented\n    more\n", stderr="\x1b[31mred\x1b[0m\n"
    )
    text = run_cli(["get", "abc", "-o", "yaml"], _serve(task)).out
    assert "  stdout: |2\n      indented\n        more\n" in text
    assert '  stderr: "\\e[31mred\\e[0m\\n"\n' in text  # a block cannot hold ESC


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_off_a_terminal_prints_one_line_per_change() -> None:
    stream, clock = io.StringIO(), Clock()
    progress = Progress(stream, "abc", started=100.0, clock=clock, tty=False)
    pending = make_task(
        "abc", "Pending", reason="Unschedulable", message="Insufficient cpu: requested 2, free 0"
    )["status"]
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
