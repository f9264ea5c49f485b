"""What a task brings beside its code (files, args, env), how other runtimes' programs are
compiled and run, the files collected after the run and what the run cost: the supervisor run
for real with the local python3, no Docker."""

import os
from dataclasses import replace
from pathlib import Path
from signal import SIGTERM

import pytest
from supervision import supervise, supervise_signalled

from sandbox.supervisor import Program

BASH = Program(main="main.sh", run=("bash", "main.sh"), python=False)


def test_args_and_env_reach_a_python_code(work: Path) -> None:
    run = supervise(
        work,
        "import os, sys; print(sys.argv[1:], os.environ['GREETING'])",
        program=Program(args=("a b", "--c"), env=(("GREETING", "hello"),)),
    )
    assert run.stdout == b"['a b', '--c'] hello\n"
    assert run.report is not None and run.report.exit_code == 0


def test_another_runtime_runs_its_main_file_with_the_args(work: Path) -> None:
    run = supervise(work, 'echo "$0 $# $1"; exit 4', program=replace(BASH, args=("x y",)))
    assert run.stdout == b"main.sh 1 x y\n"
    assert run.report is not None and run.report.exit_code == 4


def test_files_are_written_under_the_work_area_before_the_code_runs(work: Path) -> None:
    files = (("data/in.txt", b"one\ntwo\n"), ("raw.bin", bytes(range(256))))
    run = supervise(
        work,
        """
        print(open("data/in.txt").read().split())
        print(open("raw.bin", "rb").read() == bytes(range(256)))
        """,
        program=Program(files=files),
    )
    assert run.stdout == b"['one', 'two']\nTrue\n"


def test_a_failed_compile_is_reported_as_such_with_the_compilers_message(work: Path) -> None:
    program = Program(
        main="main.sh",
        compile=("sh", "-c", "echo 'main.sh:1: error: no' >&2; exit 2"),
        run=("bash", "main.sh"),
        python=False,
    )
    run = supervise(work, "echo ran", program=program)
    assert run.stdout == b""
    assert run.stderr == b"main.sh:1: error: no\n"
    assert run.report is not None and run.report.compile_failed
    assert run.report.exit_code == 1 and run.report.error is None


def test_a_compiled_program_runs_after_its_compile_step(work: Path) -> None:
    program = Program(
        main="main.sh",
        compile=("sh", "-c", "echo compiling; cp main.sh built.sh"),
        run=("bash", "built.sh"),
        python=False,
    )
    run = supervise(work, "echo ran", program=program)
    # The compiler's stdout goes to stderr: stdout is the program's alone.
    assert (run.stdout, run.stderr) == (b"ran\n", b"compiling\n")
    assert run.report is not None and not run.report.compile_failed


def test_a_run_command_that_cannot_start_exits_127_and_says_why(work: Path) -> None:
    program = Program(main="main.x", run=("/nonexistent/prog",), python=False)
    run = supervise(work, "", program=program)
    assert run.report is not None and run.report.exit_code == 127
    assert b"could not run /nonexistent/prog" in run.stderr


def _collect(patterns: tuple[str, ...], files: int = 100, size: int = 1 << 20) -> Program:
    return Program(collect=patterns, collect_files=files, collect_bytes=size)


TREE = """
import os
from dataclasses import replace
for name in ["a.txt", "b.png", ".hidden.txt", "out/c.csv", "out/deep/d.csv", ".cache/e.csv"]:
    os.makedirs(os.path.dirname(name) or ".", exist_ok=True)
    open(name, "w").write(name)
"""


@pytest.mark.parametrize(
    ("patterns", "names"),
    [
        (("*.txt",), ["a.txt"]),
        ((".*.txt",), [".hidden.txt"]),
        (("*.png", "*.txt"), ["a.txt", "b.png"]),
        (("out/*.csv",), ["out/c.csv"]),
        (("out/**/*.csv",), ["out/c.csv", "out/deep/d.csv"]),
        (("**/*.csv",), ["out/c.csv", "out/deep/d.csv"]),
        (("out/**",), ["out/c.csv", "out/deep/d.csv"]),
        (("?.txt",), ["a.txt"]),
        (("nothing*",), []),
    ],
    ids=lambda value: ",".join(value) if isinstance(value, tuple) else None,
)
def test_collect_matches_globs_like_a_shell(
    work: Path, patterns: tuple[str, ...], names: list[str]
) -> None:
    run = supervise(work, TREE, program=_collect(patterns))
    assert [file.name for file in run.files.files] == names
    assert all(file.content == file.name.encode() for file in run.files.files)
    assert run.report is not None and not run.report.files_truncated


def test_collect_follows_no_link_and_reads_no_fifo(work: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("not the task's")
    code = f"""
    import os
    os.symlink({str(secret)!r}, "link.txt")
    os.symlink({str(tmp_path)!r}, "dir")
    os.mkfifo("pipe.txt")
    open("real.txt", "w").write("mine")
    """
    run = supervise(work, code, program=_collect(("*.txt", "dir/*")), timeout=10)
    assert [(file.name, file.content) for file in run.files.files] == [("real.txt", b"mine")]


def test_collect_keeps_within_its_bounds_and_says_when_it_left_some_out(work: Path) -> None:
    code = """
    for name, size in [("a.dat", 10), ("b.dat", 5000), ("c.dat", 10), ("d.dat", 10)]:
        open(name, "wb").write(b"x" * size)
    """
    run = supervise(work, code, program=_collect(("*.dat",), files=2, size=100))
    # b.dat is too large for what is left; c.dat still fits; d.dat is one file too many.
    assert [file.name for file in run.files.files] == ["a.dat", "c.dat"]
    assert run.report is not None and run.report.files_truncated
    assert run.report.exit_code == 0


def test_collect_sends_a_large_binary_file_whole(work: Path) -> None:
    code = "import os; open('big.bin', 'wb').write(bytes(range(256)) * 4096)"
    run = supervise(work, code, program=_collect(("*.bin",), size=2 << 20))
    assert [file.content for file in run.files.files] == [bytes(range(256)) * 4096]


def test_files_are_collected_after_a_failing_run_too(work: Path) -> None:
    code = "open('partial.txt', 'w').write('half'); raise SystemExit(3)"
    run = supervise(work, code, program=_collect(("*.txt",)))
    assert [file.name for file in run.files.files] == ["partial.txt"]
    assert run.report is not None and run.report.exit_code == 3


def test_every_run_reports_what_it_cost(work: Path) -> None:
    code = """
    import time
    end = time.process_time() + 0.3
    while time.process_time() < end:
        pass
    block = bytearray(64 << 20)
    time.sleep(0.2)
    """
    run = supervise(work, code)
    assert run.usage is not None
    assert run.usage.wall_seconds >= 0.5
    assert 0.3 <= run.usage.cpu_seconds < 5
    assert run.usage.peak_memory_bytes >= 64 << 20


def test_usage_comes_from_the_containers_cgroup_where_it_can_be_read(work: Path) -> None:
    cgroup = work.parent / "cgroup"
    (cgroup / "cpuacct").mkdir(parents=True)
    (cgroup / "memory").mkdir()
    (cgroup / "cpuacct" / "cpuacct.usage").write_text("2500000000\n")
    (cgroup / "memory" / "memory.max_usage_in_bytes").write_text(f"{300 << 20}\n")
    run = supervise(work, "pass")
    assert run.usage is not None
    assert (run.usage.cpu_seconds, run.usage.peak_memory_bytes) == (2.5, 300 << 20)


def test_a_code_cannot_write_outside_its_files_names(work: Path) -> None:
    # The loader opens with O_EXCL | O_NOFOLLOW: a name already there is refused, not followed.
    (work / "taken.txt").symlink_to(work.parent / "elsewhere.txt")
    run = supervise(work, "print('ran')", program=Program(files=(("taken.txt", b"x"),)))
    assert run.report is not None and run.report.error is not None
    assert "could not write taken.txt" in run.report.error
    assert not (work.parent / "elsewhere.txt").exists()
    assert os.path.islink(work / "taken.txt")


def test_at_its_deadline_the_code_is_ended_its_files_collected_and_reported(work: Path) -> None:
    code = """
    import time
    open("progress.txt", "w").write("started")
    print("working", flush=True)
    time.sleep(30)
    """
    program = Program(deadline=0.5, collect=("*.txt",), collect_files=1, collect_bytes=100)
    run = supervise(work, code, program=program, timeout=10)
    assert run.report is not None and run.report.timed_out and not run.report.stopped
    assert run.report.signal == 9
    assert run.stdout == b"working\n"
    assert [file.name for file in run.files.files] == ["progress.txt"]
    assert run.usage is not None and 0.5 <= run.usage.wall_seconds < 5


def test_on_sigterm_the_code_is_ended_and_the_report_says_it_was_stopped(work: Path) -> None:
    code = """
    import time
    open("progress.txt", "w").write("started")
    print("ready", flush=True)
    time.sleep(30)
    """
    program = Program(collect=("*.txt",), collect_files=1, collect_bytes=100)
    run = supervise_signalled(work, code, "progress.txt", program=program, signal=SIGTERM)
    assert run.report is not None and run.report.stopped and not run.report.timed_out
    assert [file.name for file in run.files.files] == ["progress.txt"]
