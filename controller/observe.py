"""The first step of a reconcile pass: `Observer.observe` reads the world into an immutable
`Observation` (the engine's health, the host's capacity, the active tasks, the containers the
engine lists and the supervisors' reports), and `reread` reads the tasks again later in the
pass. `controller.loop` calls both; `controller.plan` decides from what they return.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from datetime import datetime, timedelta

from sqlalchemy import RowMapping, Table, func, select
from sqlmodel import col

from controller.capacity import HostCapacity, discover_capacity
from controller.errors import RuntimeUnavailable
from controller.following import Followers
from controller.gpus import GpuInfo
from controller.reconcile import Stop, TaskView
from controller.removals import Removals
from controller.runtime import ContainerRuntime, ObservedContainer, RuntimeHealth, container_name
from models.database import Database
from models.phases import ACTIVE_PHASES, Phase, Reason
from models.settings import Settings
from models.tables import Task, Transition
from sandbox.supervisor import Report

CAPACITY_REFRESH = timedelta(seconds=60)
_LOAD_CHUNK = 500  # tasks per IN (...) list: SQLite bounds a statement's parameters
# Two indexed queries, not one with OR: SQLite answers the OR with a scan of every task ever
# run. IN, not IS NOT NULL, which SQLite answers with a scan too.
_ACTIVE_VALUES = tuple(sorted(phase.value for phase in ACTIVE_PHASES))
_ACTIVE_VERSIONS = (
    "SELECT pk, resource_version FROM tasks WHERE phase IN "
    f"({', '.join('?' * len(_ACTIVE_VALUES))})"
)
_RESET_VERSIONS = "SELECT pk, resource_version FROM tasks WHERE reset_requested_to IN (?, ?)"
_RESET_VALUES = (Phase.PENDING.value, Phase.FAILED.value)


@dataclass(frozen=True)
class TaskRecord:
    """A task as the controller reads it: its row without the big columns (code, stdin,
    output), as it stood at `resource_version`."""

    pk: int
    id: str
    resource_version: int
    phase: Phase
    reason: str
    message: str
    attempt: int
    created_at: datetime
    cpu: int
    gpu: int
    ram_bytes: int
    storage_bytes: int
    timeout_seconds: int
    interactive: bool
    runtime: str
    cancel_requested_at: datetime | None
    reset_requested_to: Phase | None
    scheduled_at: datetime | None
    started_at: datetime | None
    deadline_at: datetime | None
    assigned_cpus: tuple[int, ...]
    assigned_gpus: tuple[int, ...]
    stuck_reason: str | None

    def view(self, *, stopping: Stop | None = None, containers_lost: int = 0) -> TaskView:
        """The fields `reconcile.decide` and `judge` read, with what the pass knows besides."""
        return TaskView(
            id=self.id,
            phase=self.phase,
            attempt=self.attempt,
            timeout_seconds=self.timeout_seconds,
            ram_bytes=self.ram_bytes,
            cancel_requested_at=self.cancel_requested_at,
            deadline_at=self.deadline_at,
            reset_to=self.reset_requested_to,
            created_at=self.created_at,
            scheduled_at=self.scheduled_at,
            containers_lost=containers_lost,
            stopping=stopping,
        )


_TASKS: Table = Task.__table__  # type: ignore[attr-defined]
_COLUMNS = [_TASKS.c[f.name] for f in fields(TaskRecord)]


def _record(row: RowMapping) -> TaskRecord:
    fields = dict(row)
    reset = fields["reset_requested_to"]
    fields["phase"] = Phase(fields["phase"])
    fields["reset_requested_to"] = Phase(reset) if reset else None
    fields["assigned_cpus"] = tuple(fields["assigned_cpus"])
    fields["assigned_gpus"] = tuple(fields["assigned_gpus"])
    return TaskRecord(**fields)


@dataclass(frozen=True)
class Observation:
    """The world as one pass sees it; nothing in it changes while the pass acts."""

    now: datetime  # when the pass began, on the controller's clock
    owner: str
    health: RuntimeHealth  # not ok also where listing the containers failed
    host: HostCapacity
    tasks: tuple[TaskRecord, ...]  # non-terminal, and terminal ones to reset; arrival order
    # By (task id, attempt), as the engine lists them; None where it could not be asked.
    containers: Mapping[tuple[str, int], ObservedContainer] | None
    # The supervisor's report where it settles how the code ended, by container name.
    reports: Mapping[str, Report]
    # Running tasks whose container is gone: how often one of theirs was lost before.
    containers_lost: Mapping[str, int]
    removing: frozenset[str]  # containers being removed in the background

    def name_of(self, task: TaskRecord) -> str:
        return container_name(self.owner, task.id, task.attempt)

    def container_of(self, task: TaskRecord) -> ObservedContainer | None:
        if self.containers is None:
            return None
        return self.containers.get((task.id, task.attempt))


class Observer:
    """Reads the world for each pass; keeps only caches (the host's capacity for a minute,
    each active task until its version moves)."""

    def __init__(
        self,
        settings: Settings,
        database: Database,
        runtime: ContainerRuntime,
        *,
        owner: str,
        gpu_probe: Callable[[], tuple[list[GpuInfo], str]],
        followers: Followers,
        removals: Removals,
    ) -> None:
        self._settings = settings
        self._db = database
        self._runtime = runtime
        self._owner = owner
        self._gpu_probe = gpu_probe
        self._followers = followers
        self._removals = removals
        self._host: HostCapacity | None = None
        self._host_at: datetime | None = None
        self._tasks: dict[int, TaskRecord] = {}  # the active tasks as last loaded, by pk

    def observe(self, now: datetime) -> Observation:
        health = self._runtime.health()
        host = self._capacity(health, now)
        tasks = self._active_tasks()
        removing = self._removals.names()
        listed: list[ObservedContainer] | None = None
        if health.ok:
            try:
                # Those whose code reported, or being removed: the pass needs no exit record.
                settled = removing | self._followers.reports().keys()
                listed = self._runtime.list_owned(settled=settled)
            except RuntimeUnavailable as exc:
                health = RuntimeHealth(ok=False, message=str(exc))
        containers = None if listed is None else {(c.task_id, c.attempt): c for c in listed}
        return Observation(
            now=now,
            owner=self._owner,
            health=health,
            host=host,
            tasks=tasks,
            containers=containers,
            # Read after the listing: a report that came meanwhile is used this pass.
            reports=self._followers.reports() if containers is not None else {},
            containers_lost=self._containers_lost(tasks, containers),
            removing=removing,
        )

    def reread(self, seen: Observation) -> Observation:
        """`seen` with the tasks read again (the pass has written some), all else as it was."""
        return replace(seen, tasks=self._active_tasks())

    def _capacity(self, health: RuntimeHealth, now: datetime) -> HostCapacity:
        if self._host is None or self._host_at is None or now - self._host_at > CAPACITY_REFRESH:
            gpus, _message = self._gpu_probe()
            self._host = discover_capacity(self._settings, data_root=health.data_root, gpus=gpus)
            self._host_at = now
        return self._host

    def _active_tasks(self) -> tuple[TaskRecord, ...]:
        """Non-terminal tasks, and terminal ones an admin asked to reset, in arrival order."""
        # Each task's version only, on the driver's connection (a pass asks three times, and
        # SQLAlchemy's statement machinery costs more than SQLite's answer). A task is loaded
        # when it is new to this loop or its version moved (every write to a task bumps it):
        # a queue of thousands that waits is not read again on every pass, and a burst runs
        # hundreds of passes. Indexed, so a pass costs the same with 100 or 100,000 finished
        # tasks.
        with self._db.reader.connect() as connection:
            driver = connection.connection.driver_connection  # sqlite3 or psycopg
            assert driver is not None
            sql = self._db.driver_sql
            versions = dict(driver.execute(sql(_ACTIVE_VERSIONS), _ACTIVE_VALUES).fetchall())
            versions.update(driver.execute(sql(_RESET_VERSIONS), _RESET_VALUES).fetchall())
        known = self._tasks
        stale = [
            pk
            for pk, version in versions.items()
            if pk not in known or known[pk].resource_version != version
        ]
        loaded = {task.pk: task for task in self._load(stale)}
        self._tasks = {
            pk: loaded[pk] if pk in loaded else known[pk]
            for pk in sorted(versions)
            if pk in loaded or pk in known
        }
        return tuple(self._tasks.values())

    def _load(self, pks: list[int]) -> list[TaskRecord]:
        """These tasks (a task gone meanwhile is left out)."""
        tasks: list[TaskRecord] = []
        if not pks:
            return tasks
        with self._db.reader.connect() as connection:
            for at in range(0, len(pks), _LOAD_CHUNK):
                rows = connection.execute(
                    select(*_COLUMNS).where(_TASKS.c.pk.in_(pks[at : at + _LOAD_CHUNK]))
                ).mappings()
                tasks += [_record(row) for row in rows]
        return tasks

    def _containers_lost(
        self,
        tasks: tuple[TaskRecord, ...],
        containers: Mapping[tuple[str, int], ObservedContainer] | None,
    ) -> dict[str, int]:
        """For each Running task whose container the engine no longer lists: how often the
        controller sent it back to Pending for a lost container before."""
        if containers is None:
            return {}
        gone = [
            task.id
            for task in tasks
            if task.phase == Phase.RUNNING and (task.id, task.attempt) not in containers
        ]
        if not gone:
            return {}
        with self._db.read() as session:
            counts = {
                task_id: session.execute(
                    select(func.count())
                    .select_from(Transition)
                    .where(
                        col(Transition.task_id) == task_id,
                        col(Transition.reason) == Reason.CONTAINER_LOST,
                        col(Transition.to_phase) == Phase.PENDING,
                    )
                ).scalar_one()
                for task_id in gone
            }
        return counts
