"""The soak: 300 tasks of mixed outcomes while the controller is SIGKILLed and restarted at
random every few seconds. Every task must end, once, with the outcome its code asks for.

The random choices (the mix's order, which cancellations come early, when the kills fall) come
from one seed, printed with the counts (`pytest -s`); `TASKYARD_SOAK_SEED=<n>` replays a run.
"""

import os
import random
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import docker
from crash_support import (
    Deployment,
    EngineWatch,
    assert_one_terminal_transition,
    wait_all_terminal,
)
from harness import task_body, task_containers

SMALL = {"cpu": "1", "ram": "64MB", "storage": "16MB"}
HOG = "blocks = []\nwhile True:\n    blocks.append(bytearray(16 * 1024 * 1024))"
SLEEPER = "import time\nprint('asleep', flush=True)\ntime.sleep(60)"
# kind: how many, code, timeout -> phase, reason
MIX: dict[str, tuple[int, str, int, tuple[str, str]]] = {
    "success": (120, "print('ok')", 30, ("Succeeded", "Completed")),
    "exit-2": (60, "import sys\nsys.exit(2)", 30, ("Failed", "NonZeroExit")),
    "timeout": (30, SLEEPER, 1, ("TimedOut", "DeadlineExceeded")),
    "oom": (45, HOG, 30, ("Failed", "OOMKilled")),
    "cancel": (45, SLEEPER, 120, ("Cancelled", "Cancelled")),
}
TASKS = sum(n for n, *_ in MIX.values())
KILL_EVERY = (2.0, 6.0)  # seconds between controller kills, uniformly drawn
# A kill between a container's start and the delivery of its code leaves the container waiting
# for code that never comes (the task then runs again as a new attempt): wait less for it.
CONTROLLER_ENV = {"TASKYARD_CODE_DELIVERY_TIMEOUT_SECONDS": "3"}


class Killer(threading.Thread):
    """SIGKILLs the controller at random moments and starts a new one straight away."""

    def __init__(self, deployment: Deployment, rng: random.Random) -> None:
        super().__init__(daemon=True)
        self.deployment = deployment
        self.rng = rng
        self.stop = threading.Event()
        self.kills = 0

    def run(self) -> None:
        while not self.stop.wait(self.rng.uniform(*KILL_EVERY)):
            controller = self.deployment.controller
            assert controller is not None
            controller.kill(signal.SIGKILL)
            self.kills += 1
            time.sleep(self.rng.uniform(0, 0.5))
            self.deployment.start_controller()


class Canceller(threading.Thread):
    """Cancels each of its tasks either soon after submission (mostly still queued) or once it
    is seen running."""

    def __init__(self, deployment: Deployment, early: dict[str, float], late: set[str]) -> None:
        super().__init__(daemon=True)
        self.client = deployment.client
        self.early = dict(early)  # task id -> when to cancel (monotonic)
        self.late = set(late)
        self.answers: Counter[int] = Counter()
        self.stop = threading.Event()

    def run(self) -> None:
        while (self.early or self.late) and not self.stop.is_set():
            now = time.monotonic()
            due = [i for i, at in self.early.items() if at <= now]
            if self.late:
                running = self.client.http.get(
                    "/tasks", params={"phase": "Running", "limit": 500}
                ).json()["items"]
                due += [t["id"] for t in running if t["id"] in self.late]
            for task_id in due:
                self.answers[self.client.http.delete(f"/tasks/{task_id}").status_code] += 1
                self.early.pop(task_id, None)
                self.late.discard(task_id)
            time.sleep(0.5)


def test_soak_with_the_controller_killed_at_random(
    engine: docker.DockerClient, fresh_dir: Path
) -> None:
    seed = int(os.environ.get("TASKYARD_SOAK_SEED") or time.time_ns() % 2**32)
    print(f"\nsoak seed {seed} (TASKYARD_SOAK_SEED={seed} replays it)")
    rng, kill_rng = random.Random(seed), random.Random(seed + 1)
    kinds = [kind for kind, (n, *_) in MIX.items() for _ in range(n)]
    rng.shuffle(kinds)

    deployment = Deployment(
        fresh_dir, api_env={"TASKYARD_USER_MAX_ACTIVE_TASKS": "0"}, controller_env=CONTROLLER_ENV
    ).start()
    killer = Killer(deployment, kill_rng)
    canceller: Canceller | None = None
    try:
        capacity = deployment.capacity()
        watch = EngineWatch(
            deployment.owner,
            cpu_ids=capacity["cpu"]["ids"],
            ram_allocatable=capacity["ram"]["allocatable"],
            interval=0.5,
        ).start()
        began = time.monotonic()
        killer.start()
        kind_of: dict[str, str] = {}
        early: dict[str, float] = {}
        late: set[str] = set()
        for kind in kinds:
            _, code, timeout, _ = MIX[kind]
            task_id = deployment.client.submit(task_body(code, timeout=timeout, **SMALL))["id"]
            kind_of[task_id] = kind
            if kind == "cancel" and rng.random() < 0.5:
                early[task_id] = time.monotonic() + rng.uniform(0, 2)
            elif kind == "cancel":
                late.add(task_id)
        canceller = Canceller(deployment, early, late)
        canceller.start()

        done = wait_all_terminal(deployment.client, list(kind_of), timeout=420)
        elapsed = time.monotonic() - began
        killer.stop.set()
        killer.join(30)
        canceller.join(10)
        watch.wait_all_destroyed(timeout=60)
        watch.stop()

        outcomes = Counter((t["status"]["phase"], t["status"]["reason"]) for t in done.values())
        attempts = Counter(t["status"]["attempt"] for t in done.values())
        print(
            f"soak: {TASKS} tasks in {elapsed:.0f} s, controller killed {killer.kills} times "
            f"({deployment.controllers_started} controllers), "
            f"{sum(watch.count('start').values())} containers started, "
            f"at most {watch.most_running} running at once over {watch.samples} samples"
        )
        for (phase, reason), n in sorted(outcomes.items()):
            print(f"  {phase:<10} {reason:<17} {n}")
        print(
            f"  attempts per task {dict(sorted(attempts.items()))}; cancel requests answered "
            f"{dict(canceller.answers)}"
        )

        wrong = {
            i: (kind_of[i], t["status"]["phase"], t["status"]["reason"], t["status"]["message"])
            for i, t in done.items()
            if (t["status"]["phase"], t["status"]["reason"]) != MIX[kind_of[i]][3]
        }
        assert wrong == {}
        # A later attempt only where a kill fell between a container's start and the delivery
        # of its code (the code never ran then), so at most one per kill.
        requeues = [
            e
            for i, t in done.items()
            if t["status"]["attempt"] > 1
            for e in deployment.client.events(i)
            if e["to_phase"] == "Pending" and e["from_phase"] is not None
        ]
        assert {e["reason"] for e in requeues} <= {"StartFailed"}, requeues
        assert all(
            "the controller that started it stopped first" in e["message"] for e in requeues
        ), requeues
        assert len(requeues) <= killer.kills
        assert all(
            t["status"]["stdout"] == "ok\n" for i, t in done.items() if kind_of[i] == "success"
        )
        assert killer.kills >= 10
        assert canceller.answers == Counter({202: MIX["cancel"][0]})
        for task_id in kind_of:
            assert_one_terminal_transition(deployment.client, task_id)
        starts = watch.count("start")
        assert max(starts.values()) == 1, [k for k, n in starts.items() if n > 1]
        # The record is whole: every task that ran has its start in it, and nothing else.
        started = {i for i, t in done.items() if t["status"]["started_at"]}
        assert started <= {task for task, _ in starts} <= set(kind_of)
        assert watch.violations == []
        assert task_containers(engine, deployment.owner) == []
    finally:
        killer.stop.set()
        if canceller is not None:
            canceller.stop.set()
            canceller.join(10)
        killer.join(30)
        deployment.stop(engine)
