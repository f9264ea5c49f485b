"""Timeouts, cancellation, queueing and restarts, on the real engine and real processes."""

import contextlib
import itertools
import signal
import time
from datetime import datetime
from pathlib import Path

import docker
from harness import (
    EXAMPLE_2,
    HOST_CPUS,
    Client,
    Server,
    owned_containers,
    task_body,
    task_containers,
    task_of,
)


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_busy_loop_times_out(client: Client) -> None:
    submitted = time.monotonic()
    task = client.submit(task_body("while True: pass", timeout=2), wait=20)
    elapsed = time.monotonic() - submitted
    assert task["status"]["phase"] == "TimedOut"
    assert task["status"]["reason"] == "DeadlineExceeded"
    assert "2 s timeout" in task["status"]["result"]
    assert 2 <= elapsed < 8
    ran_for = _at(task["status"]["finished_at"]) - _at(task["status"]["started_at"])
    assert 2 <= ran_for.total_seconds() < 4


def test_code_that_ignores_sigterm_times_out_too(client: Client) -> None:
    code = (
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ignoring SIGTERM', flush=True)\n"
        "while True: time.sleep(0.1)\n"
    )
    task = client.submit(task_body(code, timeout=2), wait=20)
    assert task["status"]["phase"] == "TimedOut"
    assert task["status"]["stdout"] == "ignoring SIGTERM\n"  # partial output is kept


def test_cancel_a_running_task(client: Client, server: Server, engine: docker.DockerClient) -> None:
    task = client.submit(task_body("import time\nprint('up', flush=True)\ntime.sleep(60)"))
    client.wait_for(task["id"], phases={"Running"}, timeout=20)

    response = client.http.delete(f"/tasks/{task['id']}")
    assert response.status_code == 202
    assert response.json()["status"]["cancel_requested"] is True
    asked = time.monotonic()
    done = client.wait_for(task["id"], timeout=10)

    assert done["status"]["phase"] == "Cancelled"
    assert time.monotonic() - asked < 5
    assert client.http.delete(f"/tasks/{task['id']}").status_code == 409
    time.sleep(0.5)
    assert not task_containers(engine, server.owner, task["id"])


def test_tasks_that_want_every_cpu_never_overlap(client: Client) -> None:
    body = task_body("import time; time.sleep(1); print('done')", cpu=str(HOST_CPUS))
    ids = [client.submit(body)["id"] for _ in range(3)]
    # The last of three waits at least two seconds: long enough to see why, however slow
    # the first start is on a busy machine.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        waiting = [client.get(i)["status"] for i in ids]
        if any(s["reason"] == "Unschedulable" for s in waiting):
            break
        time.sleep(0.1)
    assert any(
        s["phase"] == "Pending"
        and s["reason"] == "Unschedulable"
        and "Insufficient cpu" in s["message"]
        for s in waiting
    ), waiting

    done = [client.wait_for(i, timeout=60) for i in ids]

    assert [t["status"]["phase"] for t in done] == ["Succeeded"] * 3
    spans = sorted((_at(t["status"]["started_at"]), _at(t["status"]["finished_at"])) for t in done)
    for (_, first_end), (second_start, _) in itertools.pairwise(spans):
        assert second_start >= first_end
    # First come, first served.
    starts = [_at(t["status"]["started_at"]) for t in done]
    assert starts == sorted(starts)


def test_restart_after_sigkill_adopts_running_work(
    engine: docker.DockerClient, fresh_dir: Path
) -> None:
    first = Server(fresh_dir).start()
    client = Client(first.url)
    sleeper = client.submit(task_body("import time\ntime.sleep(3)\nprint('slept')"))
    client.wait_for(sleeper["id"], phases={"Running"}, timeout=20)
    finished = client.submit(EXAMPLE_2, wait=10)
    assert finished["status"]["phase"] == "Succeeded"

    warm_before = {c.name for c in owned_containers(engine, first.owner) if task_of(c) is None}
    first.kill(signal.SIGKILL)
    # A container of ours whose task this instance never had: it must be removed.
    stray = engine.containers.create(
        "taskyard-runner:1",
        ["sleep", "60"],
        name=f"taskyard-stray-{first.owner[:8]}",
        labels={
            "taskyard.owner": first.owner,
            "taskyard.task": "no-such-task",
            "taskyard.attempt": "1",
        },
    )
    second = Server(fresh_dir, port=first.port).start()
    try:
        done = Client(second.url).wait_for(sleeper["id"], timeout=30)
        assert done["status"]["phase"] == "Succeeded"
        assert done["status"]["result"] == "slept\n"
        assert done["status"]["attempt"] == 1  # adopted, never started twice
        phases = [e["to_phase"] for e in Client(second.url).events(sleeper["id"])]
        assert phases == ["Pending", "Scheduled", "Running", "Succeeded"]

        # The stray, the finished task's container, and the warm containers the killed
        # process left (their stdin died with it) are all removed.
        def leftovers() -> list[str]:
            return [
                c.name
                for c in owned_containers(engine, first.owner)
                if task_of(c) is not None or c.name in warm_before
            ]

        deadline = time.monotonic() + 10
        while leftovers() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert leftovers() == []
    finally:
        second.kill(signal.SIGTERM)
        for container in owned_containers(engine, first.owner):
            container.remove(force=True)
        with contextlib.suppress(docker.errors.NotFound):
            stray.remove(force=True)


def test_missing_image_keeps_tasks_pending_and_health_degraded(fresh_dir: Path) -> None:
    server = Server(fresh_dir, env={"TASKYARD_IMAGE": "taskyard-runner:no-such-tag"})
    server.start(healthy=False)
    try:
        client = Client(server.url)
        task = client.submit(EXAMPLE_2)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            status = client.get(task["id"])["status"]
            if status["reason"] == "RuntimeUnavailable":
                break
            time.sleep(0.1)
        assert status["phase"] == "Pending"
        assert status["reason"] == "RuntimeUnavailable"
        assert "taskyard image build" in status["message"]
        health = client.http.get("/healthz").json()
        assert health["status"] == "degraded"
        assert health["checks"]["runtime"]["ok"] is False
    finally:
        server.kill(signal.SIGTERM)


def test_api_and_controller_as_separate_processes(
    engine: docker.DockerClient, fresh_dir: Path
) -> None:
    api = Server(fresh_dir, verb="api").start(wait_ready=False)
    controller = Server(fresh_dir, verb="controller", port=api.port).start()
    try:
        api.wait_ready()
        client = Client(api.url)
        task = client.submit(EXAMPLE_2, wait=15)
        assert task["status"]["phase"] == "Succeeded"
        assert task["status"]["result"].startswith("Count 0\n")
    finally:
        api.kill(signal.SIGTERM)
        controller.kill(signal.SIGTERM)
        for container in owned_containers(engine, controller.owner):
            container.remove(force=True)


def test_unreachable_engine_keeps_the_service_answering(fresh_dir: Path) -> None:
    server = Server(fresh_dir, env={"DOCKER_HOST": f"unix://{fresh_dir}/no-engine.sock"})
    server.start(healthy=False)
    try:
        client = Client(server.url)
        task = client.submit(EXAMPLE_2)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            status = client.get(task["id"])["status"]
            if status["reason"] == "RuntimeUnavailable":
                break
            time.sleep(0.1)
        assert (status["phase"], status["reason"]) == ("Pending", "RuntimeUnavailable")
        assert "Docker engine" in status["message"]
        health = client.http.get("/healthz").json()
        assert health["status"] == "degraded"
        assert health["checks"]["runtime"]["ok"] is False
        assert health["checks"]["controller"]["ok"] is True  # the loop itself keeps running
    finally:
        server.kill(signal.SIGTERM)
