"""Helpers for the end-to-end tests: server processes, a small REST client, request bodies."""

import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
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
# The container runtime the service under test gives its tasks (it reads the same variable);
# deploy/test.sh runs the hostile suites once with runc and once with gVisor's runsc. Cases
# whose outcome differs under gVisor say so, and why, where they branch on GVISOR.
RUNTIME = os.environ.get("TASKYARD_DOCKER_RUNTIME") or "runc"
GVISOR = RUNTIME == "runsc"


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
    if RUNTIME not in client.info().get("Runtimes", {}):
        pytest.fail(
            f"TASKYARD_DOCKER_RUNTIME={RUNTIME}, but the engine has no such runtime; "
            "run deploy/setup-host.sh"
        )
    return client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """One `taskyard` process (serve, api or controller) with its own data dir and port."""

    def __init__(
        self,
        data_dir: Path,
        *,
        verb: str = "serve",
        port: int | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.verb = verb
        self.port = port or free_port()
        self.env = {
            **os.environ,
            "TASKYARD_DATA_DIR": str(data_dir),
            "TASKYARD_PORT": str(self.port),
            **(env or {}),
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.log = data_dir / f"{verb}-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, wait_ready: bool = True, healthy: bool = True) -> "Server":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "taskyard.cli", self.verb],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
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

    def wait_for(
        self, task_id: str, timeout: float = 60, phases: set[str] = TERMINAL
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            task = self.get(task_id)
            if task["status"]["phase"] in phases:
                return task
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"task still {task['status']['phase']}: {json.dumps(task['status'])}"
                )
            time.sleep(0.05)

    def events(self, task_id: str) -> list[dict[str, Any]]:
        response = self.http.get(f"/tasks/{task_id}/events")
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items


def task_body(
    code: str,
    *,
    cpu: str = "1",
    ram: str = "128MB",
    storage: str = "64MB",
    timeout: int | None = None,
    stdin: str | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "task_type": "execute_code",
        "code": code,
        "resources": {"cpu": cpu, "gpu": "0", "ram": ram, "storage": storage},
    }
    if timeout is not None:
        body["timeout_seconds"] = timeout
    if stdin is not None:
        body["stdin"] = stdin
    return body


def owned_containers(engine: docker.DockerClient, owner: str) -> list[Any]:
    """Every container of this instance, its warm pool's included (for cleaning up)."""
    return list(
        engine.containers.list(
            all=True, ignore_removed=True, filters={"label": f"taskyard.owner={owner}"}
        )
    )


@contextlib.contextmanager
def served(engine: docker.DockerClient, server: "Server") -> Iterator["Server"]:
    """A started server for a test session: stopped afterwards, and every container it left
    on the engine removed."""
    server.start()
    try:
        yield server
    finally:
        server.kill(signal.SIGTERM)
        for container in owned_containers(engine, server.owner):
            container.remove(force=True)


def task_of_name(name: str) -> str | None:
    """The task in a container name `taskyard-<owner>-<task>-<attempt>`; None for a warm
    container no task has claimed (`taskyard-<owner>-warm-<id>`)."""
    parts = name.lstrip("/").rsplit("-", 2)
    if "-warm-" in name or len(parts) < 3:
        return None
    return parts[1]


def task_of(container: Any) -> str | None:
    """The task a container runs: in its labels, or for a claimed warm container in the name
    the claim gave it; None for an unclaimed one."""
    if "taskyard.task" in container.labels:
        return str(container.labels["taskyard.task"])
    return task_of_name(container.name)


def task_containers(
    engine: docker.DockerClient, owner: str, task_id: str | None = None
) -> list[Any]:
    """This instance's containers that run a task (this one, if given): cold or claimed."""
    return [
        c
        for c in owned_containers(engine, owner)
        if task_of(c) is not None and task_id in {None, task_of(c)}
    ]


# --- hostile tasks beside a benign one ---------------------------------------------------------

BENIGN_CODE = "import hashlib\nprint(hashlib.sha256(b'benign' * 100000).hexdigest())\n"
BENIGN_RESULT = hashlib.sha256(b"benign" * 100000).hexdigest() + "\n"
HEALTH_BOUND_SECONDS = 2.0  # generous: an idle /healthz answers in a few milliseconds
BENIGN_WITHIN_SECONDS = 60.0  # from its submission to Succeeded, on a loaded 2-core machine


class HealthProbe(threading.Thread):
    """Asks GET /healthz every 100 ms until stopped; keeps every latency and every failure."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self._stop_asked = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as http:
            while not self._stop_asked.is_set():
                started = time.monotonic()
                try:
                    response = http.get("/healthz")
                    status = (
                        response.json().get("status")
                        if response.status_code == 200
                        else response.status_code
                    )
                    if status != "ok":
                        self.failures.append(f"{response.status_code}: {response.text[:300]}")
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                self.latencies.append(time.monotonic() - started)
                self._stop_asked.wait(0.1)

    def stop(self) -> "HealthProbe":
        self._stop_asked.set()
        self.join(40)
        return self

    @property
    def worst(self) -> float:
        return max(self.latencies, default=0.0)


class ContainerWatch:
    """Every container the engine creates for this instance from now on, by task (from the
    engine's own event stream, so even a container that lives a few milliseconds is seen), and
    the largest size each one's json-file log reaches while it exists."""

    def __init__(self, engine: docker.DockerClient, owner: str) -> None:
        self.engine = engine
        self.root = Path(engine.info()["DockerRootDir"]) / "containers"
        self.by_task: dict[str, list[str]] = {}
        self.log_peak: dict[str, int] = {}  # container id -> largest size of its log seen
        self.errors: list[str] = []
        self._stop_asked = threading.Event()
        self._events = engine.events(
            decode=True,
            since=int(time.time()) - 1,
            filters={
                "type": "container",
                "event": ["create", "rename"],
                "label": f"taskyard.owner={owner}",
            },
        )
        self._threads = [
            threading.Thread(target=self._listen, daemon=True),
            threading.Thread(target=self._measure, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def log_path(self, container_id: str) -> Path:
        return self.root / container_id / f"{container_id}-json.log"

    def _listen(self) -> None:
        try:
            for event in self._events:
                actor = event.get("Actor", {})
                attributes = actor.get("Attributes", {})
                # A cold container has its task in its labels; a warm one gets it with the
                # name its claim renames it to.
                task = (
                    attributes.get("taskyard.task")
                    or (
                        task_of_name(attributes.get("name", ""))
                        if event.get("Action") == "rename"
                        else ""
                    )
                    or ""
                )
                self.by_task.setdefault(task, []).append(actor["ID"])
                self.log_peak.setdefault(actor["ID"], 0)
        except Exception as exc:  # the stream is closed by stop()
            if not self._stop_asked.is_set():
                self.errors.append(f"the engine's event stream broke: {exc!r}")

    def _measure(self) -> None:
        while not self._stop_asked.is_set():
            for container_id in list(self.log_peak):
                try:
                    size = self.log_path(container_id).stat().st_size
                except FileNotFoundError:
                    continue
                except PermissionError as exc:
                    self.errors.append(f"cannot read the engine's log file ({exc}): run as root")
                    return
                self.log_peak[container_id] = max(self.log_peak[container_id], size)
            self._stop_asked.wait(0.02)

    def stop(self) -> "ContainerWatch":
        self._stop_asked.set()
        self._events.close()
        for thread in self._threads:
            thread.join(30)
        return self

    def containers_of(self, task_id: str) -> list[str]:
        return self.by_task.get(task_id, [])

    def peak_log_of(self, task_id: str) -> int:
        return max((self.log_peak[c] for c in self.containers_of(task_id)), default=0)


@dataclass
class Attack:
    """How one hostile task ended, and what was seen around it."""

    task: dict[str, Any]
    benign: dict[str, Any]
    health: HealthProbe
    watch: ContainerWatch

    @property
    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = self.task["status"]
        return status

    @property
    def ran_seconds(self) -> float:
        return _seconds_between(self.status["started_at"], self.status["finished_at"])

    @property
    def log_peak(self) -> int:
        """The largest size the hostile container's json-file log reached."""
        return self.watch.peak_log_of(self.task["id"])


def _seconds_between(start: str | None, end: str | None) -> float:
    assert start and end, (start, end)
    parse = lambda text: datetime.fromisoformat(text.replace("Z", "+00:00"))  # noqa: E731
    return (parse(end) - parse(start)).total_seconds()


def owned_container_names(engine: docker.DockerClient, owner: str) -> list[str]:
    """Names of the containers with this owner label that run a task (not the warm pool's),
    from one list call (no inspect of each, which a container removed meanwhile would fail)."""
    found = engine.api.containers(all=True, filters={"label": f"taskyard.owner={owner}"})
    names = [name.lstrip("/") for container in found for name in container["Names"][:1]]
    return [name for name in names if task_of_name(name) is not None]


def processes_in_cgroup_of(container_id: str) -> list[int]:
    """Host processes that are still in the container's cgroup."""
    left = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if container_id in (entry / "cgroup").read_text():
                left.append(int(entry.name))
        except OSError:
            continue  # the process ended while we looked
    return left


def run_beside_benign(
    client: Client,
    server: Server,
    engine: docker.DockerClient,
    body: dict[str, Any],
    *,
    within: float = 90,
) -> Attack:
    """Run a hostile task while a benign task runs beside it and /healthz is measured, then
    check that the benign task succeeded on time, the API answered promptly throughout, and
    nothing of either task is left behind: no container with this instance's owner label, no
    log directory, no process."""
    health = HealthProbe(server.url)
    health.start()
    watch = ContainerWatch(engine, server.owner)
    hostile_id = client.submit(body)["id"]
    try:
        # The benign task starts once the attack is under way (or over, for a quick one).
        client.wait_for(hostile_id, timeout=60, phases={"Running"} | TERMINAL)
        benign_submitted = time.monotonic()
        benign_id = client.submit(task_body(BENIGN_CODE, timeout=30))["id"]
        task = client.wait_for(hostile_id, timeout=within)
        benign = client.wait_for(benign_id, timeout=BENIGN_WITHIN_SECONDS)
        benign_took = time.monotonic() - benign_submitted
        deadline = time.monotonic() + 20
        while owned_container_names(engine, server.owner) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        health.stop()
        watch.stop()
    attack = Attack(task, benign, health, watch)

    assert benign["status"]["phase"] == "Succeeded", benign["status"]
    assert benign["status"]["result"] == BENIGN_RESULT
    assert benign_took < BENIGN_WITHIN_SECONDS
    assert health.latencies, "/healthz was never asked"
    assert not health.failures, health.failures[:5]
    assert health.worst < HEALTH_BOUND_SECONDS, f"/healthz took {health.worst:.2f} s"
    left = owned_container_names(engine, server.owner)
    assert not left, f"containers left behind: {left}"
    assert not watch.errors, watch.errors[:3]
    assert watch.containers_of(hostile_id), "the engine never created the hostile container"
    for container_id in watch.containers_of(hostile_id) + watch.containers_of(benign_id):
        assert not watch.log_path(container_id).parent.exists(), f"{container_id} files left"
        assert not processes_in_cgroup_of(container_id), f"processes left in {container_id}"
    return attack


class HostNamespaces:
    """What the host sees of this instance's containers: every 50 ms, the kernel namespaces of
    each host process in a running container's cgroup. Under runc those are the task's own
    processes; under gVisor, the sandbox's (the task's processes live in its kernel, not the
    host's)."""

    KINDS = ("user", "mnt", "pid", "net", "uts", "ipc", "cgroup")

    def __init__(self, engine: docker.DockerClient, owner: str) -> None:
        self.engine = engine
        self.owner = owner
        # (time.time() when a look began, and when it ended, container id, namespaces)
        self.samples: list[tuple[float, float, str, frozenset[str]]] = []
        self._stop_asked = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop_asked.is_set():
            began = time.time()
            running = self.engine.api.containers(
                filters={"label": f"taskyard.owner={self.owner}", "status": "running"}
            )
            for container in running:
                found = set()
                for pid in processes_in_cgroup_of(container["Id"]):
                    for kind in self.KINDS:
                        try:
                            found.add(os.readlink(f"/proc/{pid}/ns/{kind}"))
                        except OSError:
                            continue  # the process ended while we looked
                if found:
                    self.samples.append((began, time.time(), container["Id"], frozenset(found)))
            self._stop_asked.wait(0.05)

    def stop(self) -> "HostNamespaces":
        self._stop_asked.set()
        self._thread.join(30)
        return self

    def around(
        self, container_ids: list[str], moment: float, margin: float = 0.2
    ) -> tuple[set[str], set[str]]:
        """The namespaces seen in these containers by looks that ended before `moment`, and by
        looks that began after it."""
        before: set[str] = set()
        after: set[str] = set()
        for began, ended, container_id, found in self.samples:
            if container_id in container_ids and ended < moment - margin:
                before |= found
            elif container_id in container_ids and began > moment + margin:
                after |= found
        return before, after
