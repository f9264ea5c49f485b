"""Helpers for the crash-matrix, soak and engine-outage tests.

`Deployment` runs `taskyard api` and `taskyard controller` as separate processes on one data
dir, so the controller can be killed and restarted while the API keeps taking requests.
`EngineWatch` asks the engine itself what happened: it records every container event of the
deployment's owner label (to count creates and starts per attempt), and polls the running
containers' cpusets and memory limits against what the host may hand out.
"""

import itertools
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import docker
from harness import TERMINAL, Client, Server, owned_containers, task_of_name


class Deployment:
    """An API process and a controller process over one data dir, with a known owner label."""

    def __init__(
        self,
        data_dir: Path,
        *,
        api_env: dict[str, str] | None = None,
        controller_env: dict[str, str] | None = None,
    ) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        # Written before either process starts, so the test knows the label to look for.
        self.owner = uuid.uuid4().hex
        (data_dir / "instance-id").write_text(self.owner + "\n")
        self.data_dir = data_dir
        self.controller_env = controller_env or {}
        self.api = Server(data_dir, verb="api", env=api_env)
        self.controller: Server | None = None
        self.controllers_started = 0
        self.client = Client(self.api.url)

    def start_controller(self, env: dict[str, str] | None = None) -> Server:
        env = {**self.controller_env, "TASKYARD_CRASH_AT": "", **(env or {})}
        self.controller = Server(self.data_dir, verb="controller", env=env).start()
        self.controllers_started += 1
        return self.controller

    def start(self, *, crash_at: str | None = None) -> "Deployment":
        self.start_controller({"TASKYARD_CRASH_AT": crash_at} if crash_at else None)
        self.api.start()  # waits until /healthz says ok: the controller has reported
        return self

    def capacity(self) -> dict[str, Any]:
        response = self.client.http.get("/capacity")
        assert response.status_code == 200, response.text
        capacity: dict[str, Any] = response.json()
        return capacity

    def controller_log(self) -> str:
        return self.controller.log.read_text()[-3000:] if self.controller else ""

    def stop(self, engine: docker.DockerClient) -> None:
        if self.controller is not None:
            self.controller.kill()
        self.api.kill()
        for container in owned_containers(engine, self.owner):
            container.remove(force=True)


class EngineWatch:
    """What the engine saw of one owner's containers, recorded from outside the controller."""

    def __init__(
        self, owner: str, *, cpu_ids: list[int], ram_allocatable: int, interval: float = 0.2
    ) -> None:
        self._label = f"taskyard.owner={owner}"
        self._cpu_ids = set(cpu_ids)
        self._ram = ram_allocatable
        self._interval = interval
        self._stop = threading.Event()
        self._events_client = docker.from_env(timeout=30)
        self._poll_client = docker.from_env(timeout=30)
        self._stream: Any = None
        self._configs: dict[str, tuple[str, frozenset[int], int, bool]] = {}
        self._threads: list[threading.Thread] = []
        self.events: list[tuple[str, str, int, str]] = []  # action, task, attempt, name
        self.violations: list[str] = []
        self.samples = 0
        self.most_running = 0

    def start(self) -> "EngineWatch":
        # The request is made here, so no event after this line is missed.
        self._stream = self._events_client.events(
            decode=True, filters={"type": "container", "label": self._label}
        )
        for target in (self._record_events, self._poll):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        self._stream.close()
        for thread in self._threads:
            thread.join(10)

    def _record_events(self) -> None:
        # A warm container is created and started before any task claims it; its claim (a
        # rename to the attempt's name) is where that attempt's container begins, so it counts
        # as the attempt's create and start. Unclaimed warm containers count for no task.
        claimed: dict[str, tuple[str, int]] = {}
        try:
            for event in self._stream:
                action = event.get("Action", "")
                actor = event.get("Actor", {})
                attributes = actor.get("Attributes", {})
                name = attributes.get("name", "")
                task = attributes.get("taskyard.task", "")
                attempt = int(attributes.get("taskyard.attempt", "0") or 0)
                if not task and action == "rename" and task_of_name(name):
                    parts = name.rsplit("-", 2)
                    claimed[actor.get("ID", "")] = (parts[1], int(parts[2]))
                    task, attempt = claimed[actor.get("ID", "")]
                    self.events += [("create", task, attempt, name), ("start", task, attempt, name)]
                    continue
                if not task and actor.get("ID", "") in claimed:
                    task, attempt = claimed[actor.get("ID", "")]
                self.events.append((action, task, attempt, name))
        except Exception:
            if not self._stop.is_set():
                raise

    def _poll(self) -> None:
        api = self._poll_client.api
        while not self._stop.wait(self._interval):
            # One listing is one snapshot of which containers run at the same moment; their
            # limits never change, so reading them afterwards (once) is safe.
            running = api.containers(filters={"label": self._label, "status": "running"})
            held = []
            for summary in running:
                if task_of_name(summary["Names"][0]) is None:
                    continue  # a warm container no task holds: the scheduler does not count it
                config = self._configs.get(summary["Id"])
                if config is None:
                    try:
                        host = api.inspect_container(summary["Id"])["HostConfig"]
                    except docker.errors.NotFound:
                        continue
                    cores = frozenset(int(c) for c in host["CpusetCpus"].split(",") if c)
                    config = (
                        summary["Names"][0],
                        cores,
                        int(host["Memory"]),
                        host.get("CpuShares") == 2,
                    )  # best effort: yields to the rest
                    self._configs[summary["Id"]] = config
                held.append(config)
            self.samples += 1
            self.most_running = max(self.most_running, len(held))
            self._check(held)

    def _check(self, held: list[tuple[str, frozenset[int], int, bool]]) -> None:
        dedicated = [(name, cores) for name, cores, _, best_effort in held if not best_effort]
        for name, cores in dedicated:
            if not cores <= self._cpu_ids:
                self.violations.append(
                    f"{name} has cores {sorted(cores)} outside {sorted(self._cpu_ids)}"
                )
        for (a, cores_a), (b, cores_b) in itertools.combinations(dedicated, 2):
            if cores_a & cores_b:
                self.violations.append(f"{a} and {b} both hold cores {sorted(cores_a & cores_b)}")
        ram = sum(memory for _, _, memory, _ in held)
        if ram > self._ram:
            self.violations.append(
                f"running containers hold {ram} bytes of RAM, more than the "
                f"{self._ram} allocatable: {[h[0] for h in held]}"
            )

    def count(self, action: str) -> Counter[tuple[str, int]]:
        """Events of this kind per task attempt (the warm pool's own are not any task's)."""
        return Counter(
            (task, attempt) for act, task, attempt, _ in self.events if act == action and task
        )

    def wait_all_destroyed(self, timeout: float = 30) -> None:
        """Wait until every container the engine created has been destroyed again."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.count("create") == self.count("destroy"):
                return
            time.sleep(0.2)
        left = self.count("create") - self.count("destroy")
        raise AssertionError(f"containers created but never destroyed: {dict(left)}")


def wait_all_terminal(client: Client, ids: list[str], timeout: float) -> dict[str, Any]:
    """Every task, once none of the deployment's tasks is left unfinished.

    Polls with three one-item pages (cheap on a busy 2-core machine), then reads all once."""
    deadline = time.monotonic() + timeout
    while any(
        client.http.get("/tasks", params={"phase": phase, "limit": 1}).json()["items"]
        for phase in ("Pending", "Scheduled", "Running")
    ):
        if time.monotonic() > deadline:
            left = [t for t in (client.get(i) for i in ids) if t["status"]["phase"] not in TERMINAL]
            raise AssertionError(
                f"{len(left)} tasks not terminal, e.g. {[t['status'] for t in left[:3]]}"
            )
        time.sleep(0.5)
    done: dict[str, Any] = {}
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 500} | ({"cursor": cursor} if cursor else {})
        page = client.http.get("/tasks", params=params).json()
        done.update({task["id"]: task for task in page["items"]})
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert set(done) == set(ids), "the deployment holds other tasks than the test's"
    assert all(task["status"]["phase"] in TERMINAL for task in done.values())
    return done


def assert_one_terminal_transition(client: Client, task_id: str) -> list[dict[str, Any]]:
    """The task's history ends in exactly one terminal transition, and nothing follows it."""
    events = client.events(task_id)
    terminal = [e for e in events if e["to_phase"] in TERMINAL]
    assert len(terminal) == 1, (task_id, events)
    assert events[-1] == terminal[0], (task_id, events)
    return events
