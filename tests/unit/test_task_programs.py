"""From a task's runtime and fields to the supervisor's program, and from what came back to
what the task's status keeps."""

import base64

import pytest

from controller.programs import kept_files, program_of, runtime_of, usage_of
from models.runtimes import BY_NAME
from models.settings import Settings
from sandbox.frames import CollectedFile
from sandbox.supervisor import Report, Usage

SETTINGS = Settings(collect_max_files=2, collect_max_bytes=10)


def test_python_runs_in_the_waiting_interpreter_and_others_by_their_command() -> None:
    common = {"files": [], "args": [], "env": {}, "collect": [], "timeout_seconds": 5}
    python = program_of(BY_NAME["python"], settings=SETTINGS, **common)
    assert python.python and python.main == "main.py" and python.deadline == 5.0
    cpp = program_of(BY_NAME["cpp"], settings=SETTINGS, **common)
    assert not cpp.python and cpp.main == "main.cpp" and cpp.compile[0] == "g++"
    assert program_of(BY_NAME["python-data"], settings=SETTINGS, **common).python


def test_files_are_decoded_and_the_runtimes_env_wins() -> None:
    program = program_of(
        BY_NAME["python-data"],
        files=[
            {"name": "a.txt", "content": "é", "encoding": "utf8"},
            {
                "name": "b.bin",
                "content": base64.b64encode(b"\x00\xff").decode(),
                "encoding": "base64",
            },
        ],
        args=["x"],
        env={"MODE": "1", "MPLBACKEND": "TkAgg"},
        collect=["*.png"],
        timeout_seconds=3,
        settings=SETTINGS,
    )
    assert program.files == (("a.txt", "é".encode()), ("b.bin", b"\x00\xff"))
    assert dict(program.env) == {
        "MODE": "1",
        "MPLBACKEND": "Agg",
        "MPLCONFIGDIR": "/work/.matplotlib",
    }
    assert (program.collect, program.collect_files, program.collect_bytes) == (("*.png",), 2, 10)


def test_an_unknown_runtime_name_is_none() -> None:
    assert runtime_of("cobol") is None
    assert runtime_of(None) is BY_NAME["python"]


@pytest.mark.parametrize(
    ("sizes", "kept", "truncated"),
    [
        ([1, 2], [1, 2], False),
        ([4, 4, 1], [4, 4], True),
        ([11, 3], [3], True),
        ([6, 5, 4], [6, 4], True),
        ([], [], False),
    ],
    ids=["fits", "count", "too-large-then-fits", "bytes", "none"],
)
def test_kept_files_stay_within_the_settings_bounds(
    sizes: list[int], kept: list[int], truncated: bool
) -> None:
    files = [CollectedFile(f"f{n}", b"x" * size) for n, size in enumerate(sizes)]
    stored, cut = kept_files(files, False, SETTINGS)
    assert [file["size"] for file in stored] == kept and cut is truncated
    assert all(base64.b64decode(file["content"]) == b"x" * file["size"] for file in stored)


def test_a_truncation_the_reader_saw_is_kept() -> None:
    assert kept_files([], True, SETTINGS) == ([], True)


def test_usage_comes_from_the_report() -> None:
    assert usage_of(None) is None and usage_of(Report(exit_code=0)) is None
    usage = Usage(wall_seconds=1.5, cpu_seconds=0.5, peak_memory_bytes=9)
    assert usage_of(Report(usage=usage)) == {
        "wall_seconds": 1.5,
        "cpu_seconds": 0.5,
        "peak_memory_bytes": 9,
    }
