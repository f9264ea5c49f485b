"""The real `taskyard` command (a subprocess) against a real server on the real Docker engine:
submit (with --wait), get, list and cancel, their output and their exit codes."""

import json
import time
from typing import Any

from cli_support import cli_env, taskyard
from harness import Server, free_port


def task_json(server: Server, task_id: str) -> dict[str, Any]:
    shown = taskyard("get", task_id, "-o", "json", server=server)
    assert shown.returncode == 0, shown.stderr
    task: dict[str, Any] = json.loads(shown.stdout)
    return task


def wait_phase(
    server: Server, task_id: str, phases: set[str], timeout: float = 60
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        task = task_json(server, task_id)
        if task["status"]["phase"] in phases:
            return task
        assert time.monotonic() < deadline, task["status"]
        time.sleep(0.2)


def test_submit_wait_prints_the_output_and_exits_0(cli_server: Server) -> None:
    done = taskyard("submit", "-c", "print('hi')", "--wait", server=cli_server)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "hi\n"
    assert "created" in done.stderr and "Succeeded" in done.stderr


def test_a_failing_snippet_exits_1_with_the_reason_on_stderr(cli_server: Server) -> None:
    done = taskyard(
        "submit",
        "-c",
        "import sys\nprint('partial')\nsys.exit('boom')",
        "--wait",
        server=cli_server,
    )
    assert done.returncode == 1
    assert done.stdout == "partial\n"
    assert "Failed (NonZeroExit): exited with code 1" in done.stderr
    assert "boom" in done.stderr
    assert "Traceback (most recent call last)" not in done.stderr.replace("boom", "")  # ours


def test_a_timeout_exits_1_and_says_so(cli_server: Server) -> None:
    done = taskyard(
        "submit", "-c", "while True: pass", "--timeout", "1", "--wait", server=cli_server
    )
    assert done.returncode == 1
    assert "TimedOut (DeadlineExceeded)" in done.stderr


def test_code_from_stdin_and_input_from_a_file(cli_server: Server, tmp_path: Any) -> None:
    given = tmp_path / "input.txt"
    given.write_text("olleh\n")
    done = taskyard(
        "submit",
        "--stdin-file",
        str(given),
        "--wait",
        "--ram",
        "64MB",
        stdin="print(input()[::-1])\n",
        server=cli_server,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "hello\n"


def test_code_from_a_file_with_resources(cli_server: Server, tmp_path: Any) -> None:
    source = tmp_path / "job.py"
    source.write_text("import os\nprint(len(os.sched_getaffinity(0)))\n")
    done = taskyard(
        "submit",
        str(source),
        "--cpu",
        "1",
        "--ram",
        "128MB",
        "--storage",
        "16MB",
        "--wait",
        "-o",
        "json",
        server=cli_server,
    )
    assert done.returncode == 0, done.stderr
    task = json.loads(done.stdout)
    assert task["spec"]["resources"] == {"cpu": "1", "gpu": "0", "ram": "128MB", "storage": "16MB"}
    assert task["status"]["stdout"] == "1\n"


def test_submit_get_and_list(cli_server: Server) -> None:
    created = taskyard("submit", "-c", "print('listed')", server=cli_server)
    assert created.returncode == 0, created.stderr
    prefix, _, rest = created.stdout.strip().partition("/")
    task_id, _, verb = rest.partition(" ")
    assert (prefix, verb) == ("task", "created")

    task = wait_phase(cli_server, task_id, {"Succeeded"})
    assert task["status"]["result"] == "listed\n"

    summary = taskyard("get", task_id, server=cli_server)
    assert summary.returncode == 0
    assert f"ID:         {task_id}" in summary.stdout
    assert "Phase:      Succeeded" in summary.stdout
    assert summary.stdout.endswith("Result:\n  listed\n")

    listing = taskyard("list", server=cli_server)
    assert listing.returncode == 0
    header, *rows = listing.stdout.splitlines()
    assert header.split() == ["ID", "PHASE", "REASON", "CPU", "RAM", "AGE"]
    mine = [row.split() for row in rows if row.startswith(task_id)]
    assert mine and mine[0][1:5] == ["Succeeded", "Completed", "1", "256MB"]
    assert mine[0][5].endswith("s") or mine[0][5].endswith("m")

    succeeded = taskyard("list", "--phase", "Succeeded", "--all", "-o", "json", server=cli_server)
    items = json.loads(succeeded.stdout)["items"]
    assert task_id in [t["id"] for t in items]
    assert {t["status"]["phase"] for t in items} == {"Succeeded"}

    paged = taskyard("list", "--limit", "1", "--all", "-o", "name", server=cli_server)
    assert f"task/{task_id}" in paged.stdout.splitlines()
    assert len(paged.stdout.splitlines()) >= 2  # followed next_cursor past the first page


def test_cancel_a_running_task(cli_server: Server) -> None:
    created = taskyard(
        "submit",
        "-c",
        "import time\nprint('up', flush=True)\ntime.sleep(60)",
        "-o",
        "name",
        server=cli_server,
    )
    task_id = created.stdout.strip().removeprefix("task/")
    wait_phase(cli_server, task_id, {"Running"}, timeout=30)

    cancelled = taskyard("cancel", task_id, server=cli_server)
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout == f"task/{task_id} cancellation requested\n"
    task = wait_phase(
        cli_server, task_id, {"Cancelled", "Succeeded", "Failed", "TimedOut"}, timeout=15
    )
    assert task["status"]["phase"] == "Cancelled"

    again = taskyard("cancel", task_id, server=cli_server)
    assert again.returncode == 1
    assert again.stderr == f"error: task {task_id} is already Cancelled; nothing to cancel\n"


def test_server_errors_read_as_one_line(cli_server: Server) -> None:
    invalid = taskyard("submit", "-c", "x", "--cpu", "-1", "--ram", "5", server=cli_server)
    assert invalid.returncode == 1
    lines = invalid.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: resources.cpu: ")
    assert "resources.ram: " in lines[0]

    missing = taskyard("get", "nope", server=cli_server)
    assert (missing.returncode, missing.stderr) == (
        1,
        "error: task nope not found (an id prefix needs 8 characters or more)\n",
    )


def test_no_server_exits_3() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    for argv in (["list"], ["submit", "-c", "1", "--wait"], ["watch"]):
        refused = taskyard(*argv, env=cli_env(TASKYARD_SERVER=url))
        assert refused.returncode == 3, (argv, refused.stderr)
        assert "Traceback" not in refused.stderr
        assert f"taskyard at {url}" in refused.stderr


def test_usage_errors_exit_2(cli_server: Server) -> None:
    wrong = taskyard("submit", "-c", "1", "--timeout", "soon", server=cli_server)
    assert wrong.returncode == 2 and "invalid int value" in wrong.stderr
    both = taskyard("submit", "x.py", "-c", "1", server=cli_server)
    assert both.returncode == 2 and "give the code once" in both.stderr
