"""Helpers for the end-to-end tests: server processes, a small REST client, request bodies."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import docker
import httpx

HOST_CPUS = len(os.sched_getaffinity(0))
IMAGE = os.environ.get("TASKYARD_IMAGE", "taskyard-runner:1")
EXAMPLE_1 = {
    "task_type": "execute_code",
    "code": "print('Hello, World!')",
    "resources": {"cpu": "2", "gpu": "0", "ram": "512MB", "storage": "1GB"},
}
EXAMPLE_2 = {
    "task_type": "execute_code",
    "code": "for i in range(5): print(f'Count {i}')",
    "resources": {"cpu": "1", "gpu": "0", "ram": "256MB", "storage": "500MB"},
}
TERMINAL = {"Succeeded", "Failed", "TimedOut", "Cancelled"}


def require_engine() -> docker.DockerClient:
    """The real Docker engine with the runner image, or a test failure naming the fix.

    Never a skip: in CI a missing engine must fail the run."""
    import pytest

    try:
        client = docker.from_env(timeout=30)
        client.ping()
    except Exception as exc:
        pytest.fail(f"the Docker engine is not reachable ({exc}); run deploy/setup-host.sh")
    try:
        client.images.get(IMAGE)
    except docker.errors.ImageNotFound:
        pytest.fail(f"runner image {IMAGE} is missing; run `taskyard image build`")
    return client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """One `taskyard` process (serve, api or controller) with its own data dir and port."""

    def __init__(self, data_dir: Path, *, verb: str = "serve", port: int | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.verb = verb
        self.port = port or free_port()
        self.env = {**os.environ, "TASKYARD_DATA_DIR": str(data_dir),
                    "TASKYARD_PORT": str(self.port), **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None
        self.log = data_dir / f"{verb}-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, wait_ready: bool = True, healthy: bool = True) -> "Server":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "taskyard.cli", self.verb], env=self.env,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        if wait_ready and self.verb != "controller":
            self.wait_ready(healthy=healthy)
        return self

    def wait_ready(self, timeout: float = 30, *, healthy: bool = True) -> None:
        """Wait until /healthz answers, and (with `healthy`) says ok: capacity is known then."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"server exited:\n{self.log.read_text()[-3000:]}")
            try:
                response = httpx.get(self.url + "/healthz", timeout=2)
                if response.status_code == 200 and (
                    not healthy or response.json()["status"] == "ok"
                ):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"server not ready:\n{self.log.read_text()[-3000:]}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            self.process.wait(timeout=20)

    @property
    def owner(self) -> str:
        return (self.data_dir / "instance-id").read_text().strip()


class Client:
    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=70)

    def submit(self, body: dict[str, Any], wait: float = 0) -> dict[str, Any]:
        response = self.http.post("/tasks", json=body, params={"wait": wait} if wait else None)
        assert response.status_code == 201, response.text
        task: dict[str, Any] = response.json()
        return task

    def get(self, task_id: str, wait: float = 0) -> dict[str, Any]:
        response = self.http.get(f"/tasks/{task_id}", params={"wait": wait} if wait else None)
        assert response.status_code == 200, response.text
        task: dict[str, Any] = response.json()
        return task

    def wait_for(self, task_id: str, timeout: float = 60,
                 phases: set[str] = TERMINAL) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            task = self.get(task_id)
            if task["status"]["phase"] in phases:
                return task
            if time.monotonic() > deadline:
                raise AssertionError(f"task still {task['status']['phase']}: "
                                     f"{json.dumps(task['status'])}")
            time.sleep(0.05)

    def events(self, task_id: str) -> list[dict[str, Any]]:
        response = self.http.get(f"/tasks/{task_id}/events")
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items


def task_body(code: str, *, cpu: str = "1", ram: str = "128MB", storage: str = "64MB",
              timeout: int | None = None, stdin: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "task_type": "execute_code", "code": code,
        "resources": {"cpu": cpu, "gpu": "0", "ram": ram, "storage": storage},
    }
    if timeout is not None:
        body["timeout_seconds"] = timeout
    if stdin is not None:
        body["stdin"] = stdin
    return body


def owned_containers(engine: docker.DockerClient, owner: str) -> list[Any]:
    """Every container of this instance, its warm pool's included (for cleaning up)."""
    return list(engine.containers.list(all=True, ignore_removed=True,
                                       filters={"label": f"taskyard.owner={owner}"}))


def task_of(container: Any) -> str | None:
    """The task a container runs: in its labels, or for a claimed warm container in the name
    the claim gave it (`taskyard-<owner>-<task>-<attempt>`); None for an unclaimed one."""
    if "taskyard.task" in container.labels:
        return str(container.labels["taskyard.task"])
    if "-warm-" in container.name:
        return None
    return str(container.name.rsplit("-", 2)[1])


def task_containers(engine: docker.DockerClient, owner: str, task_id: str | None = None
                    ) -> list[Any]:
    """This instance's containers that run a task (this one, if given): cold or claimed."""
    return [c for c in owned_containers(engine, owner)
            if task_of(c) is not None and task_id in {None, task_of(c)}]


