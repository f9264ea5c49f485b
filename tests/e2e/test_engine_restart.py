"""The Docker engine restarts in the middle of running tasks. With `live-restore` (which
deploy/setup-host.sh turns on) the containers keep running; the controller reconnects, adopts
them, finishes them with all their output once and only once, and starts new work again.

This test restarts the real dockerd: with systemd through `systemctl`, otherwise as
setup-host.sh runs it (in the background, in its own session).
"""

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import docker
import pytest
from harness import Client, Server, owned_containers, task_body, task_containers

DOCKERD_LOG = Path("/var/log/taskyard-dockerd.log")


def engine_answers() -> bool:
    try:
        docker.from_env(timeout=5).ping()
    except Exception:
        return False
    return True


def restart_dockerd() -> None:
    if Path("/run/systemd/system").exists() and shutil.which("systemctl"):
        subprocess.run(["systemctl", "restart", "docker"], check=True, timeout=120)
    else:
        pid = int(Path("/var/run/docker.pid").read_text())
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 60
        while Path(f"/proc/{pid}").exists():
            assert time.monotonic() < deadline, "dockerd did not stop within 60 s"
            time.sleep(0.1)
        with DOCKERD_LOG.open("ab") as log:
            subprocess.Popen(
                ["dockerd"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
    deadline = time.monotonic() + 60
    while not engine_answers():
        assert time.monotonic() < deadline, f"dockerd did not come back; see {DOCKERD_LOG}"
        time.sleep(0.2)


@pytest.fixture
def live_restore(engine: docker.DockerClient) -> None:
    if not engine.info().get("LiveRestoreEnabled"):
        pytest.fail(
            "live-restore is off in dockerd; run deploy/setup-host.sh, which sets it "
            "in /etc/docker/daemon.json"
        )


def test_running_tasks_survive_an_engine_restart(
    engine: docker.DockerClient, live_restore: None, fresh_dir: Path
) -> None:
    server = Server(fresh_dir).start()
    try:
        client = Client(server.url)
        code = "import time\nprint('before', flush=True)\ntime.sleep(6)\nprint('after', flush=True)"
        task = client.submit(task_body(code, timeout=60))
        client.wait_for(task["id"], phases={"Running"}, timeout=20)
        time.sleep(1)  # "before" is printed and stored
        container = task_containers(engine, server.owner, task["id"])[0]

        restart_dockerd()

        fresh_engine = docker.from_env(timeout=30)
        assert fresh_engine.containers.get(container.id).status == "running", (
            "live-restore did not keep the task's container running"
        )
        done = client.wait_for(task["id"], timeout=60)
        status = done["status"]
        assert status["phase"] == "Succeeded", status
        assert status["stdout"] == "before\nafter\n"  # nothing lost, nothing twice
        assert status["attempt"] == 1
        assert [e["to_phase"] for e in client.events(task["id"])] == [
            "Pending",
            "Scheduled",
            "Running",
            "Succeeded",
        ]
        logs = client.http.get(f"/tasks/{task['id']}/logs").text
        assert logs.count("before") == 1 and logs.count("after") == 1

        # New work starts again: the controller reconnected and its warm pool was rebuilt.
        again = client.submit(task_body("print('again')"), wait=60)
        assert again["status"]["phase"] == "Succeeded", again["status"]
        assert again["status"]["stdout"] == "again\n"
    finally:
        server.kill(signal.SIGTERM)
        for leftover in owned_containers(docker.from_env(timeout=30), server.owner):
            leftover.remove(force=True)
