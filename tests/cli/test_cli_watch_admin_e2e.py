"""The real `taskyard watch`, `submit --watch` and `admin ...` against real server processes on
the real Docker engine: live transitions in order, a watch that survives a server restart
without a gap or a repeat, capacity, stuck tasks and their reset, and admin token handling."""

import json
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import docker
from cli_support import cli_env, stop, taskyard
from harness import HOST_CPUS, Server

T = TypeVar("T")
TERMINAL = {"Succeeded", "Failed", "TimedOut", "Cancelled"}
LIFECYCLE = ["Pending", "Scheduled", "Running", "Succeeded"]


def _ctrl_c_as_at_a_terminal() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Watcher:
    """A `taskyard watch ...` process whose stdout lines are read as they come."""

    def __init__(self, *argv: str, server: Server) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "taskyard.cli", "watch", *argv],
            env=cli_env(server),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            # Ctrl-C as at a terminal, even where the test run itself was started in the
            # background by a shell, which leaves SIGINT ignored in every process it starts.
            preexec_fn=_ctrl_c_as_at_a_terminal,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        assert self.process.stdout is not None
        stdout = self.process.stdout
        threading.Thread(target=self._pump, args=(stdout,), daemon=True).start()

    def _pump(self, stdout: Any) -> None:
        for line in stdout:
            self.lines.put(line)

    def read_until(self, done: Callable[[list[str]], bool], timeout: float = 60) -> list[str]:
        deadline = time.monotonic() + timeout
        while not done(self.seen):
            left = deadline - time.monotonic()
            assert left > 0, f"watch printed only:\n{''.join(self.seen)}"
            try:
                self.seen.append(self.lines.get(timeout=left))
            except queue.Empty:
                continue
        return self.seen

    def interrupt(self) -> tuple[int, str]:
        """Ctrl-C, as a user ends a watch: it must exit 0 without a traceback."""
        self.process.send_signal(signal.SIGINT)
        _, err = self.process.communicate(timeout=15)
        return self.process.returncode, err


def events(lines: list[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines]


def phases_of(lines: list[str], task_id: str) -> list[str]:
    return [e["to_phase"] for e in events(lines) if e["task_id"] == task_id]


def poll(what: Callable[[], T | None], timeout: float = 60, every: float = 0.3) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = what()
        if value is not None:
            return value
        assert time.monotonic() < deadline, "timed out"
        time.sleep(every)


def submit(server: Server, *argv: str) -> str:
    created = taskyard("submit", *argv, "-o", "name", server=server)
    assert created.returncode == 0, created.stderr
    return created.stdout.strip().removeprefix("task/")


def task_json(server: Server, task_id: str) -> dict[str, Any]:
    shown = taskyard("get", task_id, "-o", "json", server=server)
    assert shown.returncode == 0, shown.stderr
    task: dict[str, Any] = json.loads(shown.stdout)
    return task


def phase_is(server: Server, task_id: str, phases: set[str]) -> Callable[[], dict[str, Any] | None]:
    def check() -> dict[str, Any] | None:
        task = task_json(server, task_id)
        return task if task["status"]["phase"] in phases else None

    return check


def latest_seq(server: Server) -> int:
    """The newest transition's seq, through a finished marker task's events."""
    marker = taskyard("submit", "-c", "pass", "--watch", "-o", "json", server=server)
    assert marker.returncode == 0, marker.stderr
    # `submit --watch` printed the marker's transitions on stderr, each starting with its seq.
    return max(
        int(line.split()[0])
        for line in marker.stderr.splitlines()
        if line.split() and line.split()[0].isdigit()
    )


# ---- watch ----------------------------------------------------------------------------------


def test_watch_shows_every_transition_of_every_task_live_and_in_order(cli_server: Server) -> None:
    watcher = Watcher("-o", "json", "--since", str(latest_seq(cli_server)), server=cli_server)
    ids = [submit(cli_server, "-c", f"print({n})", "--ram", "64MB") for n in range(5)]

    lines = watcher.read_until(
        lambda seen: all(phases_of(seen, i)[-1:] == ["Succeeded"] for i in ids)
    )
    code, err = watcher.interrupt()

    for task_id in ids:
        assert phases_of(lines, task_id) == LIFECYCLE
    seqs = [e["seq"] for e in events(lines)]
    assert seqs == sorted(set(seqs))  # in commit order, none twice
    assert all(
        {"seq", "task_id", "from_phase", "to_phase", "reason", "message", "at"} <= e.keys()
        for e in events(lines)
    )
    assert code == 0 and "Traceback" not in err


def test_a_one_task_watch_prints_readable_lines_and_ends_by_itself(cli_server: Server) -> None:
    task_id = submit(cli_server, "-c", "print('w')", "--ram", "64MB")
    watched = taskyard("watch", "--task", task_id, server=cli_server, timeout=60)
    assert watched.returncode == 0, watched.stderr
    lines = watched.stdout.splitlines()
    assert [line.split()[3:6] for line in lines] == [
        ["-", "→", "Pending"],
        ["Pending", "→", "Scheduled"],
        ["Scheduled", "→", "Running"],
        ["Running", "→", "Succeeded"],
    ]
    assert all(line.split()[2] == task_id for line in lines)
    assert lines[-1].split()[6] == "Completed"


def test_watch_phase_filter(cli_server: Server) -> None:
    since = latest_seq(cli_server)
    task_id = submit(cli_server, "-c", "print(1)", "--ram", "64MB")
    poll(phase_is(cli_server, task_id, TERMINAL))
    watcher = Watcher("--phase", "Running", "--since", str(since), "-o", "json", server=cli_server)
    lines = watcher.read_until(lambda seen: any(task_id in line for line in seen))
    watcher.interrupt()
    assert {e["to_phase"] for e in events(lines)} == {"Running"}


def test_submit_watch_streams_transitions_then_the_output(cli_server: Server) -> None:
    done = taskyard(
        "submit",
        "-c",
        "import time; time.sleep(0.5); print('watched')",
        "--watch",
        server=cli_server,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "watched\n"
    for step in (
        "- → Pending",
        "Pending → Scheduled",
        "Scheduled → Running",
        "Running → Succeeded",
    ):
        assert step in done.stderr

    failed = taskyard("submit", "-c", "raise SystemExit(4)", "--watch", server=cli_server)
    assert failed.returncode == 1
    assert "Running → Failed" in failed.stderr
    assert "Failed (NonZeroExit): exited with code 4" in failed.stderr


def test_watch_survives_a_server_restart_without_gap_or_repeat(
    engine: docker.DockerClient,
    fresh_dir: Path,
) -> None:
    server = Server(fresh_dir).start()
    try:
        watcher = Watcher("-o", "json", "--since", "0", server=server)
        first = submit(server, "-c", "print('a')", "--ram", "64MB")
        watcher.read_until(lambda seen: phases_of(seen, first) == LIFECYCLE)

        server.kill(signal.SIGKILL)
        server = Server(fresh_dir, port=server.port).start()
        second = submit(server, "-c", "print('b')", "--ram", "64MB")
        lines = watcher.read_until(lambda seen: phases_of(seen, second) == LIFECYCLE)
        code, err = watcher.interrupt()
    finally:
        stop(server, engine)

    seqs = [e["seq"] for e in events(lines)]
    assert seqs == sorted(set(seqs)), seqs
    assert phases_of(lines, first) == LIFECYCLE
    assert "reconnecting" in err
    assert code == 0 and "Traceback" not in err


# ---- admin ----------------------------------------------------------------------------------


def test_admin_capacity_with_the_token_from_the_data_dir(cli_server: Server) -> None:
    task_id = submit(cli_server, "-c", "import time; time.sleep(30)", "--cpu", "1")
    try:
        poll(phase_is(cli_server, task_id, {"Running"}), timeout=30)
        shown = taskyard(
            "admin", "capacity", "--data-dir", str(cli_server.data_dir), server=cli_server
        )
        assert shown.returncode == 0, shown.stderr
        rows = {
            line.split()[0]: line.split()[1:] for line in shown.stdout.splitlines() if line.strip()
        }
        assert rows["RESOURCE"] == ["ALLOCATABLE", "ALLOCATED", "FREE"]
        assert rows["CPU"][0] == str(HOST_CPUS)
        assert int(rows["CPU"][1]) >= 1
        assert {"GPU", "RAM", "STORAGE"} <= rows.keys()
        assert task_id in shown.stdout  # its CPU's holder

        raw = taskyard(
            "admin",
            "capacity",
            "-o",
            "json",
            env=cli_env(cli_server, TASKYARD_DATA_DIR=str(cli_server.data_dir)),
        )
        capacity = json.loads(raw.stdout)
        assert capacity["cpu"]["allocatable"] == HOST_CPUS
        assert any(
            task_id in (who if isinstance(who, list) else [who])
            for who in capacity["holders"]["cpus"].values()
        )
    finally:
        taskyard("cancel", task_id, server=cli_server)


def test_admin_token_errors(cli_server: Server, tmp_path: Path) -> None:
    wrong = taskyard("admin", "capacity", "--token", "not-it", server=cli_server)
    assert wrong.returncode == 1
    assert "HTTP 403" in wrong.stderr and "Traceback" not in wrong.stderr

    missing = taskyard(
        "admin", "stuck", "--data-dir", str(tmp_path / "elsewhere"), server=cli_server
    )
    assert missing.returncode == 1
    assert missing.stderr.startswith("error: no admin token")

    token = (cli_server.data_dir / "admin-token").read_text().strip()
    from_env = taskyard(
        "admin", "stuck", "-o", "json", env=cli_env(cli_server, TASKYARD_ADMIN_TOKEN=token)
    )
    assert from_env.returncode == 0, from_env.stderr
    assert "items" in json.loads(from_env.stdout)


def test_admin_reset_requeues_a_running_task(cli_server: Server) -> None:
    task_id = submit(cli_server, "-c", "import time\nprint('up', flush=True)\ntime.sleep(60)")
    admin = ["--data-dir", str(cli_server.data_dir)]
    try:
        poll(phase_is(cli_server, task_id, {"Running"}), timeout=30)
        reset = taskyard("admin", "reset", task_id, *admin, server=cli_server)
        assert reset.returncode == 0, reset.stderr
        assert reset.stdout.startswith(f"task/{task_id} reset to Pending requested")

        def requeued() -> dict[str, Any] | None:
            task = task_json(cli_server, task_id)
            running_again = task["status"]["phase"] == "Running" and task["status"]["attempt"] == 2
            return task if running_again else None

        poll(requeued, timeout=30)
        watcher = Watcher("--task", task_id, "-o", "json", server=cli_server)
        lines = watcher.read_until(lambda seen: len(phases_of(seen, task_id)) >= 6)
        watcher.interrupt()
        assert phases_of(lines, task_id)[:6] == [
            "Pending",
            "Scheduled",
            "Running",
            "Pending",
            "Scheduled",
            "Running",
        ]
        assert events(lines)[3]["reason"] == "AdminReset"
    finally:
        taskyard("cancel", task_id, server=cli_server)


def test_a_stuck_task_is_listed_and_reset_to_failed(
    engine: docker.DockerClient, fresh_dir: Path
) -> None:
    env = {"TASKYARD_CONTROLLER_STALE_SECONDS": "2"}
    api = Server(fresh_dir, verb="api", env=env).start(healthy=False)
    controller = Server(fresh_dir, verb="controller", port=api.port, env=env).start()
    admin = ["--data-dir", str(fresh_dir)]
    try:
        task_id = submit(api, "-c", "import time; time.sleep(120)", "--timeout", "300")
        poll(phase_is(api, task_id, {"Running"}), timeout=30)
        controller.kill(signal.SIGKILL)  # the task now makes no progress

        def listed() -> dict[str, Any] | None:
            shown = taskyard("admin", "stuck", "-o", "json", *admin, server=api)
            assert shown.returncode == 0, shown.stderr
            items = [i for i in json.loads(shown.stdout)["items"] if i["task_id"] == task_id]
            return items[0] if items else None

        item = poll(listed, timeout=40)
        assert item["phase"] == "Running" and item["why"]
        table = taskyard("admin", "stuck", *admin, server=api)
        assert table.stdout.splitlines()[0].split() == ["TASK", "PHASE", "FOR", "WHY"]
        assert any(line.startswith(task_id) for line in table.stdout.splitlines())

        for _ in range(2):  # a reset sent twice is one reset
            reset = taskyard("admin", "reset", task_id, "--to", "Failed", *admin, server=api)
            assert reset.returncode == 0, reset.stderr

        controller = Server(fresh_dir, verb="controller", port=api.port, env=env).start()
        failed = poll(phase_is(api, task_id, TERMINAL), timeout=40)
        assert (failed["status"]["phase"], failed["status"]["reason"]) == ("Failed", "AdminReset")
        again = taskyard("admin", "reset", task_id, "--to", "Failed", *admin, server=api)
        assert again.returncode == 0, again.stderr  # already done: the same answer

        finished = submit(api, "--wait", "-c", "print(1)")
        refused = taskyard("admin", "reset", finished, "--to", "Failed", *admin, server=api)
        assert refused.returncode == 1
        assert refused.stderr.startswith("error: ") and "Succeeded" in refused.stderr
        assert poll(lambda: True if listed() is None else None, timeout=20)
    finally:
        controller.kill(signal.SIGTERM)
        stop(api, engine)
