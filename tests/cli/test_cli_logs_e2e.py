"""The real `taskyard logs` and `taskyard submit --follow` (subprocesses) against a real server
on the real Docker engine: lines appear as the task prints them, before it ends, and the exit
code says how it ended."""

import json
import queue
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import IO, Any

from cli_support import cli_env, taskyard
from harness import Server

COUNTER = "import time\nfor i in range(3): print(i, flush=True); time.sleep(0.5)"
# Printing for 5 s: longer than a loaded machine takes to start the CLI that follows it.
SLOW_COUNTER = "import time\nfor i in range(6): print(i, flush=True); time.sleep(1)"


@dataclass
class Line:
    text: str
    at: float  # time.monotonic() when it was read


class Live:
    """A `taskyard ...` process whose stdout lines are timestamped as they arrive."""

    def __init__(self, *argv: str, server: Server) -> None:
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "taskyard.cli", *argv],
            env=cli_env(server),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._lines: queue.Queue[Line | None] = queue.Queue()
        self._err: list[str] = []
        assert self.process.stdout is not None and self.process.stderr is not None
        threading.Thread(target=self._pump, args=(self.process.stdout,), daemon=True).start()
        threading.Thread(
            target=lambda f: self._err.extend(f), args=(self.process.stderr,), daemon=True
        ).start()

    def _pump(self, stdout: IO[str]) -> None:
        for text in stdout:
            self._lines.put(Line(text, time.monotonic()))
        self._lines.put(None)

    def finish(self, timeout: float = 60) -> tuple[list[Line], int, float, str]:
        """Every stdout line, the exit code, when the process exited, and its stderr."""
        lines: list[Line] = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                self.process.kill()
                raise AssertionError(
                    f"still running after {timeout} s; printed {[x.text for x in lines]}"
                ) from None
            if line is None:
                break
            lines.append(line)
        code = self.process.wait(timeout=max(deadline - time.monotonic(), 1))
        exited = time.monotonic()
        time.sleep(0.1)  # let the stderr reader finish
        return lines, code, exited, "".join(self._err)


def submit(server: Server, code: str, *extra: str) -> str:
    created = taskyard("submit", "-c", code, "-o", "json", *extra, server=server)
    assert created.returncode == 0, created.stderr
    task_id: str = json.loads(created.stdout)["id"]
    return task_id


def task(server: Server, task_id: str) -> dict[str, Any]:
    shown = taskyard("get", task_id, "-o", "json", server=server)
    assert shown.returncode == 0, shown.stderr
    found: dict[str, Any] = json.loads(shown.stdout)
    return found


def test_submit_follow_prints_each_number_as_it_is_printed(cli_server: Server) -> None:
    lines, code, exited, err = Live("submit", "-c", COUNTER, "--follow", server=cli_server).finish()

    assert code == 0, err
    assert [line.text for line in lines] == ["0\n", "1\n", "2\n"]
    assert "created" in err
    # One number about every half second, the first well before the command ends.
    assert exited - lines[0].at > 0.7, f"0 arrived {exited - lines[0].at:.2f} s before exit"
    assert lines[1].at - lines[0].at > 0.3 and lines[2].at - lines[1].at > 0.3, [
        round(line.at - lines[0].at, 2) for line in lines
    ]


def test_logs_follow_of_a_running_task_prints_as_it_goes_and_exits_0(cli_server: Server) -> None:
    task_id = submit(cli_server, SLOW_COUNTER)

    lines, code, exited, err = Live("logs", "-f", task_id, server=cli_server).finish()

    assert code == 0, err
    assert [line.text for line in lines] == [f"{i}\n" for i in range(6)]
    assert exited - lines[-1].at < 5
    assert lines[-1].at - lines[0].at > 0.6, "the lines came all at once"
    assert task(cli_server, task_id)["status"]["phase"] == "Succeeded"


def test_logs_follow_of_a_failing_task_exits_1_with_the_reason(cli_server: Server) -> None:
    code = "import sys, time\nprint('working', flush=True)\ntime.sleep(0.5)\nsys.exit('gave up')\n"
    task_id = submit(cli_server, code)

    lines, exit_code, _, err = Live("logs", "-f", task_id, server=cli_server).finish()

    assert exit_code == 1
    assert [line.text for line in lines] == ["working\n"]
    assert "gave up" in err
    assert f"error: task/{task_id} Failed (NonZeroExit): exited with code 1" in err


def test_logs_without_follow_prints_what_exists_so_far(cli_server: Server) -> None:
    code = "import time\nprint('early', flush=True)\ntime.sleep(30)\n"
    task_id = submit(cli_server, code, "--timeout", "40")
    try:
        deadline = time.monotonic() + 15  # the task starts, then prints at once
        while True:
            shown = taskyard("logs", task_id, server=cli_server)
            if shown.stdout or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout == "early\n"
        assert task(cli_server, task_id)["status"]["phase"] == "Running"
    finally:
        taskyard("cancel", task_id, server=cli_server)


def test_logs_of_a_finished_task_prints_both_streams(cli_server: Server) -> None:
    code = "import sys\nprint('to stdout')\nprint('to stderr', file=sys.stderr)\n"
    done = taskyard("submit", "-c", code, "--wait", "-o", "json", server=cli_server)
    assert done.returncode == 0, done.stderr
    task_id = json.loads(done.stdout)["id"]

    shown = taskyard("logs", task_id, server=cli_server)
    only_err = taskyard("logs", task_id, "--stream", "stderr", server=cli_server)

    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == "to stdout\n"
    assert shown.stderr == "to stderr\n"
    assert only_err.returncode == 0
    assert (only_err.stdout, only_err.stderr) == ("", "to stderr\n")
