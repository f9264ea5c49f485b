"""Crashes at every step of a task's life, and containers removed or killed behind the
controller's back, on the real engine with real processes.

The controller runs apart from the API with `TASKYARD_CRASH_AT=<point>` (controller.crashpoints),
dies by its own SIGKILL the first time a task reaches that point, and is started again without
it. The engine's own records then show that no attempt's code started twice, nothing was left
behind, and no core was ever handed out twice; the API shows one honest ending per task.
"""

import signal
import time
from pathlib import Path
from typing import Any

import docker
import pytest
from crash_support import (
    Deployment,
    EngineWatch,
    assert_one_terminal_transition,
    wait_all_terminal,
)
from harness import Client, Server, task_body, task_containers

from controller.crashpoints import POINTS

SMALL = {"cpu": "1", "ram": "64MB", "storage": "16MB"}
# code, timeout -> phase, reason, exit code, stdout. The first task is still running when the
# controller comes back from a crash after its start: it must be adopted, not started again.
WORKLOAD: list[tuple[str, int, tuple[str, str, int | None, str]]] = [
    ("import time\ntime.sleep(5)\nprint('slept')", 30, ("Succeeded", "Completed", 0, "slept\n")),
    ("print('first')", 30, ("Succeeded", "Completed", 0, "first\n")),
    ("import sys\nprint('no', file=sys.stderr)\nsys.exit(3)", 30, ("Failed", "NonZeroExit", 3, "")),
    (
        "import time\nprint('napping', flush=True)\ntime.sleep(60)",
        1,
        ("TimedOut", "DeadlineExceeded", 137, "napping\n"),
    ),
    ("print('last')", 30, ("Succeeded", "Completed", 0, "last\n")),
]


@pytest.mark.parametrize("point", POINTS)
def test_controller_killed_at_each_step_recovers(
    point: str, engine: docker.DockerClient, fresh_dir: Path
) -> None:
    deployment = Deployment(fresh_dir).start(crash_at=point)
    try:
        capacity = deployment.capacity()
        watch = EngineWatch(
            deployment.owner,
            cpu_ids=capacity["cpu"]["ids"],
            ram_allocatable=capacity["ram"]["allocatable"],
        ).start()
        client = deployment.client
        ids = [
            client.submit(task_body(code, timeout=timeout, **SMALL))["id"]
            for code, timeout, _ in WORKLOAD
        ]

        crashed = deployment.controller
        assert crashed is not None and crashed.process is not None
        returncode = crashed.process.wait(timeout=60)
        assert returncode == -signal.SIGKILL, deployment.controller_log()
        unfinished = [
            i
            for i in ids
            if client.get(i)["status"]["phase"]
            not in {"Succeeded", "Failed", "TimedOut", "Cancelled"}
        ]
        assert unfinished, "the crash came after every task had ended"

        deployment.start_controller()
        done = wait_all_terminal(client, ids, timeout=90)
        watch.wait_all_destroyed()
        watch.stop()

        # A warm container claimed for an attempt but killed before its code arrived (the crash
        # after the claim) ran nothing: that task alone runs as a second attempt.
        again = [i for i in ids if done[i]["status"]["attempt"] == 2]
        assert len(again) == (1 if point == "after-claim" else 0), [done[i]["status"] for i in ids]
        for task_id, (_, _, expected) in zip(ids, WORKLOAD, strict=True):
            status = done[task_id]["status"]
            phase, reason, exit_code, stdout = expected
            assert (status["phase"], status["reason"]) == (phase, reason), status
            assert status["exit_code"] == exit_code, status
            assert status["stdout"] == stdout, status
            assert status["attempt"] == (2 if task_id in again else 1), status
            assert_one_terminal_transition(client, task_id)
        # The code of an attempt started at most once; a container created but never started
        # (the crash after create) is replaced, so that attempt alone has a second create.
        starts, creates = watch.count("start"), watch.count("create")
        assert set(starts) == {(i, 1) for i in ids} | {(i, 2) for i in again}
        assert max(starts.values()) == 1, starts
        twice = [key for key, n in creates.items() if n > 1]
        assert len(twice) == (1 if point == "after-create" else 0), creates
        assert max(creates.values()) <= 2, creates
        print(
            f"{point}: {len(watch.events)} engine events, {watch.samples} samples, "
            f"at most {watch.most_running} running at once"
        )
        assert watch.violations == []
        assert watch.samples > 10
        assert task_containers(engine, deployment.owner) == []
        alive = deployment.controller
        assert alive is not None and alive.process is not None
        assert alive.process.poll() is None, deployment.controller_log()
    finally:
        deployment.stop(engine)


# --- behind the controller's back ---------------------------------------------------------------


def _container_of(engine: docker.DockerClient, owner: str, task_id: str, attempt: int) -> Any:
    found = [c for c in task_containers(engine, owner, task_id) if c.name.endswith(f"-{attempt}")]
    assert len(found) == 1, found
    return found[0]


def _wait_running(client: Client, task_id: str, attempt: int) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        task = client.get(task_id)
        status = task["status"]
        if status["phase"] == "Running" and status["attempt"] == attempt:
            return task
        assert status["phase"] in {"Pending", "Scheduled", "Running"}, status
        assert time.monotonic() < deadline, status
        time.sleep(0.05)


def test_container_removed_behind_our_back_is_retried_once_then_fails(
    client: Client, server: Server, engine: docker.DockerClient
) -> None:
    code = "import time\nprint('up', flush=True)\ntime.sleep(120)"
    task_id = client.submit(task_body(code, timeout=300))["id"]
    _wait_running(client, task_id, attempt=1)

    _container_of(engine, server.owner, task_id, 1).remove(force=True)  # docker rm -f
    again = _wait_running(client, task_id, attempt=2)

    assert again["status"]["assigned"]["cpus"], again["status"]
    requeued = [e for e in client.events(task_id) if e["to_phase"] == "Pending"][-1]
    assert (requeued["from_phase"], requeued["reason"]) == ("Running", "ContainerLost")
    assert "retried once, as attempt 2" in requeued["message"]

    _container_of(engine, server.owner, task_id, 2).remove(force=True)  # and once more
    done = client.wait_for(task_id, timeout=30)

    status = done["status"]
    assert (status["phase"], status["reason"], status["attempt"]) == ("Failed", "ContainerLost", 2)
    assert "for the second time" in status["result"]
    events = assert_one_terminal_transition(client, task_id)
    assert [(e["to_phase"], e["reason"]) for e in events if e["from_phase"] == "Running"] == [
        ("Pending", "ContainerLost"),
        ("Failed", "ContainerLost"),
    ]
    time.sleep(1)
    assert not task_containers(engine, server.owner, task_id)


def test_container_killed_behind_our_back_fails_without_retry(
    client: Client, server: Server, engine: docker.DockerClient
) -> None:
    code = "import time\nprint('up', flush=True)\ntime.sleep(120)"
    task_id = client.submit(task_body(code, timeout=300))["id"]
    _wait_running(client, task_id, attempt=1)
    deadline = time.monotonic() + 30
    while "up" not in client.http.get(f"/tasks/{task_id}/logs").text:  # its code is running
        assert time.monotonic() < deadline
        time.sleep(0.1)

    _container_of(engine, server.owner, task_id, 1).kill()  # docker kill: SIGKILL, code 137
    done = client.wait_for(task_id, timeout=30)

    status = done["status"]
    assert (status["phase"], status["reason"], status["exit_code"], status["attempt"]) == (
        "Failed",
        "NonZeroExit",
        137,
        1,
    )
    assert "killed by SIGKILL from outside the task" in status["result"]
    assert status["stdout"] == "up\n"
    assert_one_terminal_transition(client, task_id)
