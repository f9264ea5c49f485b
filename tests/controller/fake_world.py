"""The world the controller tests run in: a real database, tasks submitted through the real
API app, the in-memory fake engine, a clock the test moves, and a `Reconciler` over them
(the `world` fixture in conftest.py builds one per test).

The host is fixed at two allocatable CPU cores (0 and 1), 4 GiB of RAM, 10 GiB of storage and
no GPUs, so that scheduling does not depend on the machine running the tests.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlmodel import col, select

from controller.capacity import HostCapacity
from controller.fake_runtime import FakeRuntime
from controller.loop import Reconciler
from controller.runtime import (
    ATTEMPT_LABEL,
    OWNER_LABEL,
    TASK_LABEL,
    ContainerSpec,
    container_name,
)
from models.clock import utcnow
from models.database import Database
from models.quantities import GIB
from models.settings import Settings
from models.tables import Task, Transition

OWNER = "test-owner"
HOST = HostCapacity(
    cpus_total=2,
    cpu_ids=(0, 1),
    ram_total=8 * GIB,
    ram_allocatable=4 * GIB,
    storage_total=20 * GIB,
    storage_allocatable=10 * GIB,
    gpus=(),
    gpu_sharing=1,
)


@dataclass
class Clock:
    """A clock the test moves by hand; starts at the real time."""

    now: datetime = field(default_factory=utcnow)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class World:
    settings: Settings
    db: Database
    client: TestClient
    fake: FakeRuntime
    clock: Clock
    reconciler: Reconciler

    def new_reconciler(self) -> Reconciler:
        """A fresh controller process over the same database and engine (after a kill -9)."""
        self.reconciler = Reconciler(
            self.settings,
            self.db,
            self.fake,
            owner=OWNER,
            gpu_probe=lambda: ([], "no gpus"),
            clock=self.clock,
        )
        return self.reconciler

    def submit(self, cpu: str = "1", *, timeout: int = 30, code: str = "print('hi')") -> str:
        response = self.client.post(
            "/tasks",
            json={
                "task_type": "execute_code",
                "code": code,
                "timeout_seconds": timeout,
                "resources": {"cpu": cpu, "gpu": "0", "ram": "64MB", "storage": "100MB"},
            },
        )
        assert response.status_code == 201, response.text
        task_id: str = response.json()["id"]
        return task_id

    def cancel(self, task_id: str) -> None:
        response = self.client.delete(f"/tasks/{task_id}")
        assert response.status_code == 202, response.text

    def task(self, task_id: str) -> dict[str, Any]:
        response = self.client.get(f"/tasks/{task_id}")
        assert response.status_code == 200
        task: dict[str, Any] = response.json()
        return task

    def status(self, task_id: str) -> dict[str, Any]:
        status: dict[str, Any] = self.task(task_id)["status"]
        return status

    def phase(self, task_id: str) -> str:
        phase: str = self.status(task_id)["phase"]
        return phase

    def events(self, task_id: str) -> list[dict[str, Any]]:
        response = self.client.get(f"/tasks/{task_id}/events")
        assert response.status_code == 200
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    def transition_count(self) -> int:
        with self.db.read() as session:
            return len(list(session.exec(select(Transition))))

    def write_task(self, task_id: str, **values: Any) -> None:
        # As every writer of a task does, it bumps the version: the loop reloads a task only
        # when its version moved.
        with self.db.write() as session:
            session.execute(
                update(Task)
                .where(col(Task.id) == task_id)
                .values(**values, resource_version=Task.resource_version + 1)
            )
            session.commit()

    def once(self) -> None:
        self.reconciler.reconcile_once()

    def once_and_exit(self) -> None:
        """A pass that sends SIGKILL, then the pass the container's exit wakes: a kill does
        not wait for its container to stop."""
        self.once()
        self.once()


def name_of(task_id: str, attempt: int = 1) -> str:
    return container_name(OWNER, task_id, attempt)


def spec_for(task_id: str, attempt: int = 1) -> ContainerSpec:
    return ContainerSpec(
        name=name_of(task_id, attempt),
        labels={OWNER_LABEL: OWNER, TASK_LABEL: task_id, ATTEMPT_LABEL: str(attempt)},
        image="taskyard-runner:1",
        cpus=(0,),
        all_cpus=(0, 1),
        cpu_quota=1.0,
        gpus=(),
        ram=64 * 1024 * 1024,
        storage=100 * 1024 * 1024,
        pids_limit=256,
        nofile_limit=1024,
        payload=b"{}",
        log_limit=1 << 20,
    )


def running(world: World, cpu: str = "1", **kwargs: Any) -> str:
    """Submit a task and run one pass, which must leave it Running."""
    task_id = world.submit(cpu, **kwargs)
    world.once()
    assert world.phase(task_id) == "Running"
    return task_id
