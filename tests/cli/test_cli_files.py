"""What `-f`, `--env` and `--out` read and write on the local machine."""

import argparse
import base64
from pathlib import Path

import pytest

from taskyard.client import Task
from taskyard.commands.context import UsageError
from taskyard.commands.files import program_fields, save_files


def flags(**given: object) -> argparse.Namespace:
    values: dict[str, object] = {
        "runtime": None,
        "files": [],
        "args_": [],
        "env": [],
        "collect": [],
        "out": None,
        "wait": False,
        "watch": False,
        "follow": False,
    }
    return argparse.Namespace(**(values | given))


def test_no_flags_add_nothing_so_the_body_keeps_the_seeds_shape() -> None:
    assert program_fields(flags()) == {}


def test_text_files_go_as_utf8_and_others_as_base64(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("é\n")
    (tmp_path / "b.bin").write_bytes(b"\xff\x00")
    fields = program_fields(flags(files=[str(tmp_path / "a.txt"), f"data/b={tmp_path / 'b.bin'}"]))
    assert fields["files"] == [
        {"name": "a.txt", "content": "é\n", "encoding": "utf8"},
        {"name": "data/b", "content": base64.b64encode(b"\xff\x00").decode(), "encoding": "base64"},
    ]


@pytest.mark.parametrize(
    ("given", "words"),
    [
        ({"files": ["/no/such/file"]}, "cannot read /no/such/file"),
        ({"env": ["NOEQUALS"]}, "--env takes NAME=VALUE"),
        ({"out": "dir"}, "add --wait"),
    ],
    ids=["missing-file", "env-without-value", "out-without-wait"],
)
def test_bad_flags_are_usage_errors(given: dict[str, object], words: str) -> None:
    with pytest.raises(UsageError, match=words):
        program_fields(flags(**given))


def _task(*names: str) -> Task:
    files = [
        {"name": name, "size": 1, "content": base64.b64encode(b"x").decode()} for name in names
    ]
    return Task({"id": "t", "status": {"files": files}})


def test_collected_files_are_saved_under_the_directory(tmp_path: Path) -> None:
    written = save_files(_task("plot.png", "out/data.csv"), str(tmp_path))
    assert written == [tmp_path / "plot.png", tmp_path / "out" / "data.csv"]
    assert (tmp_path / "out" / "data.csv").read_bytes() == b"x"


@pytest.mark.parametrize("name", ["../escape", "/etc/passwd", "a/../../b"])
def test_a_name_that_would_leave_the_directory_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(UsageError, match="outside"):
        save_files(_task(name), str(tmp_path / "out"))
    assert not (tmp_path / "escape").exists()
