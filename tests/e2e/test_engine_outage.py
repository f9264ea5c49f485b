"""The container engine unreachable for a while, with tasks queued and running.

The shared dockerd must keep running for everyone else, so the controller reaches it through a
unix-socket proxy of the test's own (`DOCKER_HOST=unix://…`). Pausing the proxy drops every
connection it holds and closes new ones at once: to the controller the engine is down. The
containers themselves run on, as they do when only the engine's API is gone.
"""

import contextlib
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

import docker
from crash_support import Deployment, assert_one_terminal_transition, wait_all_terminal
from harness import task_body, task_containers

SMALL = {"cpu": "1", "ram": "64MB", "storage": "16MB"}
OUTAGE_SECONDS = 8


class EngineProxy:
    """Forwards a unix socket to the engine's; `pause()` makes the engine unreachable."""

    def __init__(self, path: Path) -> None:
        host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        assert host.startswith("unix://"), f"this test proxies a unix socket, not {host}"
        self.upstream = host.removeprefix("unix://")
        self.path = path
        self.paused = threading.Event()
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(path))
        self._listener.listen(64)
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def docker_host(self) -> str:
        return f"unix://{self.path}"

    def pause(self) -> None:
        self.paused.set()
        with self._lock:
            held, self._open = self._open, set()
        for sock in held:
            self._drop(sock)

    def resume(self) -> None:
        self.paused.clear()

    def close(self) -> None:
        self.pause()
        self._listener.close()

    @staticmethod
    def _drop(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):  # already closed by its peer
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            if self.paused.is_set():
                self._drop(client)
                continue
            engine = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            engine.connect(self.upstream)
            with self._lock:
                self._open.update((client, engine))
            for source, target in ((client, engine), (engine, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
            target.shutdown(socket.SHUT_WR)  # pass a half-close on: it ends an attach's stdin
        except OSError:
            self._drop(source)
            self._drop(target)


def _status(deployment: Deployment, task_id: str) -> dict[str, Any]:
    status: dict[str, Any] = deployment.client.get(task_id)["status"]
    return status


def test_tasks_wait_out_an_engine_outage_and_finish_after_it(
    engine: docker.DockerClient, fresh_dir: Path
) -> None:
    proxy = EngineProxy(fresh_dir.parent / "engine.sock")
    deployment = Deployment(fresh_dir, controller_env={"DOCKER_HOST": proxy.docker_host})
    try:
        deployment.start()
        client = deployment.client
        # Ends by itself during the outage; its outcome is read once the engine is back.
        finishing = client.submit(
            task_body("import time\nprint('up', flush=True)\ntime.sleep(3)\nprint('done')", **SMALL)
        )["id"]
        # Its deadline passes during the outage, when nobody can kill it.
        overdue = client.submit(
            task_body("import time\nprint('up', flush=True)\ntime.sleep(120)", timeout=3, **SMALL)
        )["id"]
        for task_id in (finishing, overdue):
            client.wait_for(task_id, phases={"Running"}, timeout=60)

        proxy.pause()
        outage_began = time.monotonic()
        queued = client.submit(task_body("print('later')", **SMALL))["id"]
        seen: dict[str, set[str]] = {finishing: set(), overdue: set(), queued: set()}
        while time.monotonic() - outage_began < OUTAGE_SECONDS:
            for task_id, phases in seen.items():
                phases.add(_status(deployment, task_id)["phase"])
            time.sleep(0.2)
        health = client.http.get("/healthz").json()
        during = {task_id: _status(deployment, task_id) for task_id in seen}
        proxy.resume()
        resumed = time.monotonic()

        done = wait_all_terminal(client, list(seen), timeout=90)
        took = time.monotonic() - resumed
        settle = time.monotonic() + 20  # each is removed right after its outcome is stored
        while (owned_left := task_containers(engine, deployment.owner)) and (
            time.monotonic() < settle
        ):
            time.sleep(0.2)
        for task_id in seen:
            assert_one_terminal_transition(client, task_id)
    finally:
        proxy.close()
        deployment.stop(engine)

    # During the outage: nothing failed, the queued task said why it waited, and the running
    # ones were reported stuck (their containers cannot be observed), not lost.
    assert (health["status"], health["checks"]["runtime"]["ok"]) == ("degraded", False), health
    assert seen == {finishing: {"Running"}, overdue: {"Running"}, queued: {"Pending"}}
    assert (during[queued]["reason"], during[queued]["phase"]) == ("RuntimeUnavailable", "Pending")
    assert "cannot reach the Docker engine" in during[queued]["message"]
    for task_id in (finishing, overdue):
        assert during[task_id]["reason"] == "Started"
        assert "engine is unavailable" in during[task_id]["stuck"]["why"], during[task_id]

    # After it: each ends as its code asked, once, with nothing left behind.
    print(f"\nall three ended {took:.1f} s after the engine came back")
    outcomes = {
        task_id: (t["status"]["phase"], t["status"]["reason"], t["status"]["stdout"])
        for task_id, t in done.items()
    }
    assert outcomes == {
        finishing: ("Succeeded", "Completed", "up\ndone\n"),
        overdue: ("TimedOut", "DeadlineExceeded", "up\n"),
        queued: ("Succeeded", "Completed", "later\n"),
    }
    assert all(t["status"]["attempt"] == 1 and t["status"]["stuck"] is None for t in done.values())
    assert owned_left == []
