"""Runs the supervisor program for real with the local python3 (no Docker), for the tests in
this folder: the work dir "/work" is replaced by a temporary directory, and what it writes is
read back as the controller reads the container's log.
"""

import json
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

from sandbox.frames import decode_run, frame_key, keyed
from sandbox.supervisor import SOURCE, Program, build_payload

MAX_FILES = 1000  # what the tests' reader accepts; each test's program sets its own bounds
MAX_BYTES = 1 << 30
LIMIT = 1024
KEY = frame_key("instance-secret", "taskyard-test-container")


class Run:
    """One finished supervisor run: its exit code, output and the report it wrote."""

    def __init__(self, completed: subprocess.CompletedProcess[bytes]) -> None:
        self.returncode = completed.returncode
        self.framed = completed.stdout
        self.stdout, self.stderr, report, self.files = decode_run(
            KEY, completed.stdout, max_files=MAX_FILES, max_bytes=MAX_BYTES
        )
        # What the run cost differs run by run; tests of it read `usage`.
        self.usage = report.usage if report else None
        self.report = replace(report, usage=None) if report else None
        lines = [line for line in completed.stdout.splitlines() if line.startswith(KEY + b"r")]
        self.fields = json.loads(lines[-1][len(KEY) + 1 :]) if lines else {}


def source_in(work: Path) -> str:
    # The test runs the supervisor as its own user, which may be root: the code runs as it too.
    src = SOURCE.replace("TASK_USER = 65534", "TASK_USER = None")
    assert "TASK_USER = None" in src
    src = src.replace('WORK = "/work"', f"WORK = {str(work)!r}")
    assert "/work" not in src.replace(str(work), "")
    # The memory cgroup's counters are this test's file (absent unless a test writes it), not
    # those of whatever cgroup the test runs in.
    counters = SOURCE[SOURCE.index("OOM_COUNTERS = ") :].split("\n", 1)[0]
    src = src.replace(counters, f"OOM_COUNTERS = ({str(work.parent / 'oom_control')!r},)")
    # The usage counters too: a test that writes them under `cgroup/` reads them back.
    src = src.replace('"/sys/fs/cgroup/', '"' + f"{work.parent}/cgroup/")
    assert "/sys/fs/cgroup" not in src
    return src


def supervise(
    work: Path,
    code: str,
    stdin: str | None = None,
    *,
    limit: int = LIMIT,
    wait: str = "2",
    timeout: float = 20,
    program: Program | None = None,
) -> Run:
    payload = build_payload(textwrap.dedent(code), stdin, limit, program=program or Program())
    completed = subprocess.run(
        [sys.executable, "-I", "-c", source_in(work), wait],
        input=keyed(KEY, payload),
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    return Run(completed)


def supervise_signalled(
    work: Path, code: str, when: str, *, program: Program, signal: int, timeout: float = 20
) -> Run:
    """As `supervise`, and `signal` to the supervisor once the code has written file `when`."""
    payload = build_payload(textwrap.dedent(code), None, LIMIT, program=program)
    with subprocess.Popen(
        [sys.executable, "-I", "-c", source_in(work), "2"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as process:
        assert process.stdin is not None
        process.stdin.write(keyed(KEY, payload))
        process.stdin.close()
        process.stdin = None  # closed: `communicate` has nothing to send
        deadline = time.monotonic() + timeout
        while not (work / when).exists():
            assert time.monotonic() < deadline, f"the code never wrote {when}"
            time.sleep(0.01)
        process.send_signal(signal)
        stdout, stderr = process.communicate(timeout=timeout)
    return Run(subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr))
