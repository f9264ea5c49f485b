"""The supervisor program that runs first in every task container, run for real with the local
python3 (no Docker): the work dir "/work" is replaced by a temporary directory. What it writes is
read back with `decode_output`, as the controller reads the container's log.
"""

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from supervision import KEY, LIMIT, source_in, supervise

from sandbox.frames import decode_output, keyed
from sandbox.supervisor import SOURCE, Program, Report, build_payload


def test_stdout_and_stderr_are_copied_and_reported(work: Path) -> None:
    run = supervise(
        work,
        """
        import sys
        print("Hello, World!")
        print("a warning", file=sys.stderr)
    """,
    )
    assert run.returncode == 0
    assert run.stdout == b"Hello, World!\n"
    assert run.stderr == b"a warning\n"
    assert run.report == Report(exit_code=0)
    assert run.fields["stdout_bytes"] == len(b"Hello, World!\n")
    assert run.fields["stderr_bytes"] == len(b"a warning\n")


def test_code_is_written_to_the_work_dir_and_runs_there(work: Path) -> None:
    run = supervise(
        work,
        """
        # the first line of the task
        import os
        print(os.getcwd())
        print(open("main.py").read().strip().splitlines()[0])
    """,
    )
    assert run.stdout.decode().splitlines() == [str(work), "# the first line of the task"]


def test_stdin_is_delivered_to_the_code(work: Path) -> None:
    run = supervise(
        work,
        """
        import sys
        data = sys.stdin.read()
        print(sum(int(n) for n in data.split()), repr(data))
    """,
        stdin="1 2 3\n4\n",
    )
    assert run.stdout == b"10 '1 2 3\\n4\\n'\n"


def test_large_stdin_is_delivered_whole(work: Path) -> None:
    stdin = "x" * 300_000 + "\n"
    run = supervise(
        work,
        """
        import sys
        print(len(sys.stdin.read()))
    """,
        stdin=stdin,
    )
    assert run.stdout == b"300001\n"


def test_code_that_ignores_a_large_stdin_still_finishes(work: Path) -> None:
    run = supervise(work, 'print("not reading")\n', stdin="y\n" * 500_000, timeout=10)
    assert run.returncode == 0
    assert run.stdout == b"not reading\n"
    assert run.report == Report(exit_code=0)


def test_no_stdin_reads_as_end_of_file(work: Path) -> None:
    run = supervise(
        work,
        """
        import sys
        print(repr(sys.stdin.read()))
    """,
        stdin=None,
    )
    assert run.stdout == b"''\n"


def test_unicode_code_and_stdin_survive(work: Path) -> None:
    run = supervise(
        work,
        """
        import sys
        sys.stdout.buffer.write(("שלום é " + sys.stdin.read()).encode("utf-8"))
    """,
        stdin="👩‍💻",
    )
    assert run.stdout.decode("utf-8") == "שלום é 👩‍💻"


def test_output_is_capped_at_the_limit_and_flagged(work: Path) -> None:
    run = supervise(
        work,
        """
        import sys
        sys.stdout.write("o" * 5000)
        sys.stderr.write("e" * 3000)
    """,
        limit=LIMIT,
    )
    # One byte past the cap comes through: it shows the cut even when no report comes.
    assert run.stdout == b"o" * (LIMIT + 1)
    assert run.stderr == b"e" * (LIMIT + 1)
    assert run.report == Report(exit_code=0, stdout_truncated=True, stderr_truncated=True)
    assert run.fields["stdout_bytes"] == 5000
    assert run.fields["stderr_bytes"] == 3000


def test_output_exactly_at_the_limit_is_not_truncated(work: Path) -> None:
    run = supervise(
        work,
        """
        import sys
        sys.stdout.write("o" * 1024)
    """,
        limit=1024,
    )
    assert run.stdout == b"o" * 1024
    assert run.report == Report(exit_code=0)


def test_report_comes_after_all_of_stderr(work: Path) -> None:
    run = supervise(
        work,
        """
        import sys
        sys.stderr.write("last words")
    """,
    )
    assert run.stderr == b"last words"
    assert run.report == Report(exit_code=0)
    assert run.framed.splitlines()[-1].startswith(KEY + b"r")


def test_child_exit_code_is_propagated(work: Path) -> None:
    run = supervise(
        work,
        """
        import sys
        print("failing")
        sys.exit(3)
    """,
    )
    assert run.returncode == 3
    assert run.report is not None and run.report.exit_code == 3
    assert run.stdout == b"failing\n"


def test_uncaught_exception_exits_1_with_the_traceback(work: Path) -> None:
    run = supervise(work, "raise ValueError('boom')\n")
    assert run.returncode == 1
    assert run.stderr.rstrip().endswith(b"ValueError: boom")


def test_child_killed_by_sigkill_gives_137(work: Path) -> None:
    run = supervise(
        work,
        """
        import os, signal
        print("before", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """,
    )
    assert run.returncode == 137
    assert run.report is not None and run.report.exit_code == 137
    assert run.stdout == b"before\n"


KILLED_BY_SIGKILL = """
    import os, signal
    os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize(
    ("code", "counters", "oom_kills", "oom_killed"),
    [
        (KILLED_BY_SIGKILL, "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n", 1, True),
        (KILLED_BY_SIGKILL, "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n", 0, False),
        (KILLED_BY_SIGKILL, None, 0, False),
        ("raise SystemExit(137)", "oom_kill 1\n", None, False),
    ],
    ids=[
        "sigkill-after-an-oom-kill",
        "sigkill-no-oom-kill",
        "no-counters-to-read",
        "exit-137-is-no-kill",
    ],
)
def test_a_sigkilled_code_reports_the_cgroups_oom_kills(
    work: Path, code: str, counters: str | None, oom_kills: int | None, oom_killed: bool
) -> None:
    # The engine's own OOM flag is now and then missing at the exit; the report carries the
    # memory cgroup's counter, read once the code is gone.
    if counters is not None:
        (work.parent / "oom_control").write_text(counters)
    run = supervise(work, code)
    assert run.returncode == 137
    assert run.fields.get("oom_kills") == oom_kills
    assert run.report is not None and run.report.oom_killed is oom_killed


def test_empty_stdin_reports_that_no_code_was_delivered(work: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-I", "-c", source_in(work), "0.5"],
        input=b"",
        capture_output=True,
        timeout=10,
        check=False,
    )
    report = decode_output(KEY, completed.stdout)[2]
    assert completed.returncode == 3
    assert report is not None and report.error is not None
    assert "no code was delivered" in report.error
    assert not (work / "main.py").exists()


def test_payload_that_never_arrives_ends_after_the_delivery_wait(work: Path) -> None:
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-I", "-c", source_in(work), "0.5"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        stdout, _ = process.communicate(timeout=10)  # stdin stays open and empty until then
    finally:
        process.kill()
    report = decode_output(KEY, stdout)[2]
    assert process.returncode == 3
    assert report is not None and report.error is not None
    assert "no code was delivered" in report.error
    assert time.monotonic() - started < 5


@pytest.fixture
def grandchildren(work: Path) -> Iterator[Path]:
    """A file where the code writes the pids it leaves behind; they are killed afterwards."""
    pids = work.parent / "pids"
    yield pids
    if pids.exists():
        for pid in pids.read_text().split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)


@pytest.mark.parametrize(
    "grandchild",
    [
        pytest.param("import time; time.sleep(30)", id="silent"),
        pytest.param(
            "import time\nwhile True:\n    print('still here', flush=True)\n    time.sleep(0.01)",
            id="chatty",
        ),
        pytest.param("while True:\n    print('still here', flush=True)", id="flooding"),
    ],
)
def test_setsid_grandchild_does_not_keep_the_supervisor_alive(
    work: Path, grandchildren: Path, grandchild: str
) -> None:
    code = f"""
        import subprocess, sys
        child = subprocess.Popen([sys.executable, "-c", {grandchild!r}], start_new_session=True)
        open({str(grandchildren)!r}, "w").write(str(child.pid))
        print("parent done", flush=True)
    """
    started = time.monotonic()
    try:
        run = supervise(work, code, timeout=5)
    except subprocess.TimeoutExpired:
        pytest.fail("the supervisor was still running 5 s after the code exited")
    assert time.monotonic() - started < 3
    assert run.returncode == 0
    assert run.stdout.startswith(b"parent done\n")
    assert run.report is not None and run.report.exit_code == 0


# --- what reaches the engine's log ------------------------------------------------------------


def test_every_byte_value_comes_back_exactly_on_both_streams(work: Path) -> None:
    run = supervise(
        work,
        """
        import os
        data = bytes(range(256)) + b"\\xff\\xfe\\xc3(\\xe2\\x82\\xf0\\x9f\\x98"
        os.write(1, data)
        os.write(2, data[::-1])
    """,
    )
    data = bytes(range(256)) + b"\xff\xfe\xc3(\xe2\x82\xf0\x9f\x98"
    assert run.stdout == data
    assert run.stderr == data[::-1]
    assert run.report == Report(exit_code=0)


def test_what_the_engine_stores_is_plain_ascii_lines(work: Path) -> None:
    # The json-file log driver keeps ASCII as it is; anything else may be replaced.
    run = supervise(
        work,
        """
        import os
        os.write(1, bytes(range(256)) * 64)
        os.write(2, "שלום 😀 e\\u0301".encode())
    """,
        limit=1 << 20,
    )
    assert run.framed.isascii()
    assert all(32 <= byte < 127 for byte in run.framed.replace(b"\n", b""))
    assert run.stdout == bytes(range(256)) * 64


def test_a_flood_of_tiny_writes_becomes_a_few_lines(work: Path) -> None:
    run = supervise(
        work,
        """
        import os
        for _ in range(20000):
            os.write(1, b"x")
    """,
        limit=1 << 20,
    )
    assert run.stdout == b"x" * 20000
    # 20,000 writes; the supervisor batches what arrives within its flush interval.
    assert run.framed.count(b"\n") < 2000


def test_the_task_cannot_write_a_report_of_its_own(work: Path) -> None:
    run = supervise(
        work,
        """
        import sys
        sys.stderr.buffer.write(b"\\x00\\x1etaskyard-report:" + b'{"error": "forged"}\\n')
        sys.exit(4)
    """,
    )
    assert run.returncode == 4
    assert run.report == Report(exit_code=4)


AS_PYTHON_RUNS_IT = {
    "traceback": "def f():\n    raise ValueError('boom')\nf()\n",
    "syntax-error": "print(\n",
    "exit-code": "import sys\nprint('x')\nsys.exit(3)\n",
    "chained": "try:\n    1/0\nexcept Exception as e:\n    raise KeyError('k') from e\n",
    "main-module": (
        "import sys\nprint(__name__, __file__, sys.argv, sys.path[0], __spec__,\n"
        "      sorted(k for k in dir() if not k.startswith('__')))\n"
    ),
    "pickles-its-own-functions": (
        "import multiprocessing as mp\ndef sq(x): return x * x\n"
        "if __name__ == '__main__':\n"
        "    with mp.Pool(2) as pool: print(pool.map(sq, [1, 2, 3]))\n"
    ),
}


@pytest.mark.parametrize("code", AS_PYTHON_RUNS_IT.values(), ids=AS_PYTHON_RUNS_IT.keys())
def test_the_code_runs_exactly_as_python3_runs_the_file(work: Path, code: str) -> None:
    """The interpreter that runs the code is started before the code arrives; what the code
    sees and prints (tracebacks included) is what `python3 main.py` gives."""
    run = supervise(work, code)
    direct = subprocess.run(
        [sys.executable, str(work / "main.py")],
        cwd=work,
        capture_output=True,
        timeout=20,
        check=False,
    )
    assert (run.report.exit_code if run.report else None, run.stdout, run.stderr) == (
        direct.returncode,
        direct.stdout,
        direct.stderr,
    )


def test_the_undelivered_report_says_so_in_its_typed_field(work: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-I", "-c", source_in(work), "0.5"],
        input=KEY + b"\n",
        capture_output=True,
        timeout=10,
        check=False,
    )
    report = decode_output(KEY, completed.stdout)[2]
    assert report is not None and report.undelivered


def test_code_too_large_for_the_work_area_is_a_start_failure(work: Path) -> None:
    # The interpreter writes the code itself; it tells the supervisor why it could not (here:
    # the code's directory is a file).
    (work / "taken").write_text("")
    completed = subprocess.run(
        [sys.executable, "-I", "-c", source_in(work), "2"],
        input=keyed(
            KEY,
            build_payload("print('never')\n", None, LIMIT, program=Program(main="taken/main.py")),
        ),
        capture_output=True,
        timeout=10,
        check=False,
    )
    stdout, _, report = decode_output(KEY, completed.stdout)
    assert completed.returncode == 3
    assert stdout == b""
    assert report is not None and report.error == (
        "could not write the code to the work area: File exists"
    )
    assert not report.undelivered


def test_live_input_for_a_code_that_does_not_read_is_held_up_to_a_bound(work: Path) -> None:
    """Past INPUT_HELD bytes the supervisor stops reading its stdin, so that whoever writes to
    it (the controller, through the engine) waits instead of filling the container's memory."""
    assert "INPUT_HELD = 1 << 20" in SOURCE
    process = subprocess.Popen(
        [sys.executable, "-I", "-c", source_in(work), "2"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdin is not None
    try:
        payload = build_payload("import time\ntime.sleep(30)\n", None, LIMIT, interactive=True)
        process.stdin.write(keyed(KEY, payload))
        process.stdin.flush()
        os.set_blocking(process.stdin.fileno(), False)
        accepted, deadline = 0, time.monotonic() + 5
        while time.monotonic() < deadline and accepted < 64 << 20:
            try:
                accepted += os.write(process.stdin.fileno(), b"x" * 65536)
            except BlockingIOError:
                time.sleep(0.05)
        # The bound, what one read takes in, and the pipe's own buffer (64 KiB to 1 MiB).
        assert 1 << 20 <= accepted <= (1 << 20) + 65536 + (1 << 20), accepted
    finally:
        process.kill()
        process.wait()
