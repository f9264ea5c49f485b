"""The reconcile pass: it reads capacity, desired tasks and observed containers, decides per
task with the pure functions of `reconcile` and `scheduling`, acts through the runtime, and
writes status with guarded transitions. `controller.service` runs the passes.
"""

import logging
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import defer
from sqlmodel import col

from controller.capacity import HostCapacity, discover_capacity
from controller.compaction import compact_history
from controller.crashpoints import crashpoint
from controller.errors import RuntimeUnavailable, StartRejected
from controller.gpus import GpuInfo, discover_gpus
from controller.input_forwarding import InputForwarder
from controller.output import ChunkWriter, OutputReader
from controller.reconcile import (
    Action,
    End,
    Finish,
    MarkRunning,
    RemoveContainer,
    Reset,
    Retry,
    Start,
    Stop,
    StuckLimits,
    TaskView,
    decide,
    judge,
    stuck_reason,
)
from controller.runtime import (
    ATTEMPT_LABEL,
    OWNER_LABEL,
    TASK_LABEL,
    CapturedOutput,
    ContainerRuntime,
    ContainerSpec,
    ObservedContainer,
    RuntimeHealth,
    container_name,
)
from controller.scheduling import Holding, Placement, Request, place
from controller.stats import ControllerStats
from controller.status import move, note_waiting
from controller.warm_pool import warm_targets
from models.clock import utcnow
from models.database import Database
from models.phases import ACTIVE_PHASES, Phase, Reason
from models.settings import Settings
from models.tables import (
    Capacity,
    Task,
    Transition,
)
from sandbox.frames import log_budget
from sandbox.supervisor import Report, build_payload

log = logging.getLogger("taskyard.controller")

CAPACITY_REFRESH = timedelta(seconds=60)
COMPACT_EVERY = timedelta(seconds=60)
HEARTBEAT_EVERY = timedelta(seconds=3)  # at most; a quarter of the staleness limit if less
# A scheduled task has not started yet; allow this much on top of its timeout when guessing
# when it frees its slots.
START_ALLOWANCE_SECONDS = 5.0
# The warm pool keeps the storage size most used by this many recent starts.
RECENT_STARTS = 32
_BIG_COLUMNS = ("code", "stdin", "stdout", "stderr", "result")
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


@dataclass
class PassReport:
    """What one pass did, for logs and tests."""

    started: list[str] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    runtime_ok: bool = True
    next_deadline: datetime | None = None


def _view(task: Task) -> TaskView:
    return TaskView(
        id=task.id,
        phase=Phase(task.phase),
        attempt=task.attempt,
        timeout_seconds=task.timeout_seconds,
        ram_bytes=task.ram_bytes,
        cancel_requested_at=task.cancel_requested_at,
        deadline_at=task.deadline_at,
        reset_to=Phase(task.reset_requested_to) if task.reset_requested_to else None,
        created_at=task.created_at,
        scheduled_at=task.scheduled_at,
    )


class Reconciler:
    """One reconcile pass at a time over the database and the runtime."""

    def __init__(
        self,
        settings: Settings,
        database: Database,
        runtime: ContainerRuntime,
        *,
        owner: str,
        gpu_probe: Callable[[], tuple[list[GpuInfo], str]] = discover_gpus,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._settings = settings
        self._db = database
        self._runtime = runtime
        self._owner = owner
        self._gpu_probe = gpu_probe
        self._clock = clock
        self._host: HostCapacity | None = None
        self._host_at: datetime | None = None
        self._written_capacity: dict[str, object] | None = None
        self._heartbeat_at: datetime | None = None
        self._compacted_at: datetime | None = None
        self._stuck_limits = StuckLimits(
            settings.stuck_grace_seconds, settings.pending_stuck_seconds
        )
        self.stats = ControllerStats()
        self._writer = ChunkWriter(database)
        self._readers: dict[str, OutputReader] = {}
        self._input = InputForwarder(database, runtime, wake=self._wake)
        # Containers sent SIGKILL, with the outcome that ends their task once a later pass
        # sees them stopped (the kill does not wait for that).
        self._stopping: dict[str, Stop] = {}
        # Containers this process started (or began to), of those the engine still holds; any
        # other was started by an earlier controller, which stopped on the way.
        self._started_here: set[str] = set()
        self._gpu_message = ""
        self._recent_storage: deque[int] = deque(maxlen=RECENT_STARTS)
        self._judged_early: set[str] = set()  # containers judged at the report, still running
        self._draining: dict[str, Holding] = {}  # their slots, until the engine shows them gone
        # Finished here, their removal under way in the background: garbage collection leaves
        # them be, and the pass needs no exit record of them.
        self._removing: set[str] = set()
        self._removing_lock = threading.Lock()
        # The active tasks as last loaded, by pk; see `_active_tasks`.
        self._tasks: dict[int, Task] = {}
        # Asks for a pass soon (the service sets it): a supervisor has reported.
        self.wake_hook: Callable[[], None] | None = None

    def _wake(self) -> None:
        if self.wake_hook is not None:
            self.wake_hook()

    def close(self) -> None:
        """Stop the output writer after it has stored what it holds; remove warm containers."""
        self._writer.close()
        self._runtime.close()

    def _follow(self, task: Task, name: str) -> None:
        """Make sure a reader copies this running container's output (once per container)."""
        reader = self._readers.get(name)
        if reader is not None and (reader.is_alive() or reader.report is not None):
            return  # still reading, or done: the supervisor reported
        self._readers[name] = OutputReader(
            self._db,
            self._runtime,
            self._writer,
            task_id=task.id,
            attempt=task.attempt,
            name=name,
            limit=self._settings.output_limit_bytes,
            on_report=self.wake_hook,
        ).start()

    def _settling_report(self, name: str) -> Report | None:
        """The supervisor's report where it settles how the code ended: not for a code killed
        by SIGKILL, which may be an OOM kill: that one waits for the engine's exit record and
        its OOM flag (the report's count of the cgroup's OOM kills backs the flag up)."""
        reader = self._readers.get(name)
        report = reader.report if reader is not None else None
        return report if report is not None and report.signal != signal.SIGKILL else None

    def _settled(self) -> set[str]:
        """Containers the pass needs no exit record of: their code reported, or their task is
        done and they are being removed."""
        reported = {name for name in self._readers if self._settling_report(name) is not None}
        with self._removing_lock:
            return self._removing | reported

    def _reported(self, task: Task, container: ObservedContainer) -> ObservedContainer:
        """A container whose supervisor has reported (still running, or listed without its
        exit record), as the exited container it is about to be: its code is done, and its
        output is all in. Judging it now saves the engine's exit handling (tens of
        milliseconds) on every task."""
        report = self._settling_report(container.name)
        if report is None:
            return container
        # Not inspected again: the engine locks a container while it handles its exit, so an
        # inspect now would wait for exactly what this spares.
        self._judged_early.add(container.name)
        return replace(
            container,
            state="exited",
            exit_code=3 if report.exit_code is None else report.exit_code,
            started_at=task.started_at or container.started_at,
            finished_at=self._clock(),
        )

    def _stop_following(self, name: str) -> CapturedOutput | None:
        """Wait for the container's reader to drain (its container has stopped) and store;
        the output it read, where it read all of it (it saw the supervisor's report)."""
        self._input.forget(name)
        reader = self._readers.pop(name, None)
        if reader is None:
            return None
        reader.join(timeout=2.0)
        self._writer.flush()
        return reader.output

    # --- capacity -------------------------------------------------------------------------

    def _capacity(self, health: RuntimeHealth, now: datetime) -> HostCapacity:
        if self._host is None or self._host_at is None or now - self._host_at > CAPACITY_REFRESH:
            gpus, self._gpu_message = self._gpu_probe()
            self._host = discover_capacity(self._settings, data_root=health.data_root, gpus=gpus)
            self._host_at = now
        return self._host

    def _write_capacity(
        self, host: HostCapacity, holdings: list[Holding], health: RuntimeHealth, now: datetime
    ) -> None:
        """Rewrite the capacity row where it changed, and the heartbeat now and again.

        A pass that changes nothing must write nothing: the database watcher would take the
        commit for new work and wake another pass.
        """
        fields = {
            "cpus_total": host.cpus_total,
            "cpu_ids": list(host.cpu_ids),
            "ram_total": host.ram_total,
            "ram_allocatable": host.ram_allocatable,
            "storage_total": host.storage_total,
            "storage_allocatable": host.storage_allocatable,
            "gpu_ids": [gpu.index for gpu in host.gpus],
            "gpu_names": [gpu.name for gpu in host.gpus],
            "gpu_sharing": host.gpu_sharing,
            "allocated_cpus": sorted(cpu for h in holdings for cpu in h.cpus),
            "allocated_gpus": sorted(gpu for h in holdings for gpu in h.gpus),
            "allocated_ram": sum(h.ram for h in holdings),
            "allocated_storage": sum(h.storage for h in holdings),
            "runtime_ok": health.ok,
            "runtime_message": health.message,
        }
        every = min(HEARTBEAT_EVERY, timedelta(seconds=self._settings.controller_stale_seconds / 4))
        heartbeat_due = self._heartbeat_at is None or now - self._heartbeat_at >= every
        if fields == self._written_capacity and not heartbeat_due:
            return
        with self._db.write() as session:
            row = session.get(Capacity, "local") or Capacity(node="local")
            for name, value in fields.items():
                setattr(row, name, value)
            row.stats = self.stats.dump()
            row.heartbeat_at = now
            session.add(row)
            session.commit()
        self._written_capacity = fields
        self._heartbeat_at = now

    # --- the pass -------------------------------------------------------------------------

    def reconcile_once(self) -> PassReport:
        began = time.perf_counter()
        now = self._clock()
        report = PassReport()
        health = self._runtime.health()
        host = self._capacity(health, now)
        tasks = self._active_tasks()

        observed: list[ObservedContainer] | None = None
        if health.ok:
            try:
                observed = self._runtime.list_owned(settled=self._settled())
            except RuntimeUnavailable as exc:
                self.stats.engine_errors += 1
                health = RuntimeHealth(ok=False, message=str(exc))
        else:
            self.stats.engine_errors += 1
        report.runtime_ok = health.ok

        containers = {(c.task_id, c.attempt): c for c in observed or []}
        if self._stopping:  # kept while its task has not ended
            ending = {
                container_name(self._owner, t.id, t.attempt)
                for t in tasks
                if t.phase in {Phase.SCHEDULED, Phase.RUNNING}
            }
            self._stopping = {n: s for n, s in self._stopping.items() if n in ending}
        if observed is not None:
            # A finished task's slots stay held until the engine shows its container stopped.
            still = {c.name for c in observed if c.state in {"running", "paused", "restarting"}}
            self._draining = {n: h for n, h in self._draining.items() if n in still}
        if observed is not None:
            self._started_here.intersection_update(c.name for c in observed)
        for task in tasks:
            if observed is None and task.phase in {Phase.SCHEDULED, Phase.RUNNING}:
                continue  # cannot tell a lost container from an unreachable engine
            container = containers.get((task.id, task.attempt))
            if container is not None and container.state == "running":
                self._follow(task, container.name)
            if container is not None and (
                container.state == "running" or container.exit_code is None
            ):
                container = self._reported(task, container)
            view = _view(task)
            if self._stopping:
                name = container_name(self._owner, task.id, task.attempt)
                view = replace(view, stopping=self._stopping.get(name))
            if container is None and task.phase == Phase.RUNNING:
                view = replace(view, containers_lost=self._requeues(task.id, Reason.CONTAINER_LOST))
            self._act(task, container, decide(view, container, now), report)
        if observed is not None:
            self._collect_garbage(observed, tasks, report)
            self._input.forward(
                [
                    (t.id, container_name(self._owner, t.id, t.attempt))
                    for t in tasks
                    if t.interactive and t.phase == Phase.RUNNING
                ]
            )

        tasks = self._active_tasks()
        pending = [
            t
            for t in tasks
            if t.phase == Phase.PENDING
            and t.cancel_requested_at is None
            and t.reset_requested_to is None
        ]
        if health.ok:
            self._schedule(
                pending, host, self._holdings(tasks, now) + list(self._draining.values()), report
            )
            tasks = self._active_tasks()
            self._keep_warm(tasks, host, now)
        else:
            changed = [
                t
                for t in pending
                if (t.reason, t.message) != (Reason.RUNTIME_UNAVAILABLE, health.message)
            ]
            if changed:
                with self._db.write() as session:
                    note_waiting(
                        session,
                        reason=Reason.RUNTIME_UNAVAILABLE,
                        messages={task.id: health.message for task in changed},
                    )
                    session.commit()
        self._record_stuck(tasks, containers, health.ok, self._clock())
        self._compact_history(now)
        self.stats.pass_seconds.observe(time.perf_counter() - began)
        self._write_capacity(host, self._holdings(tasks, now), health, now)
        # Not those already being killed: their exit, not the clock, wakes the pass that ends them.
        deadlines = [
            t.deadline_at
            for t in tasks
            if t.deadline_at
            and t.phase == Phase.RUNNING
            and container_name(self._owner, t.id, t.attempt) not in self._stopping
        ]
        report.next_deadline = min(deadlines, default=None)
        return report

    def _active_tasks(self) -> list[Task]:
        """Non-terminal tasks, and terminal ones an admin asked to reset, in arrival order."""
        # Each task's version only, on the driver's connection (a pass asks three times, and
        # SQLAlchemy's statement machinery costs more than SQLite's answer). A task is loaded
        # when it is new to this loop or its version moved (every write to a task bumps it):
        # a queue of thousands that waits is not built into objects on every pass, and a
        # burst runs hundreds of passes. Indexed, so a pass costs the same with 100 or
        # 100,000 finished tasks.
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
        loaded = {task.pk or 0: task for task in self._load(stale)}
        self._tasks = {
            pk: loaded[pk] if pk in loaded else known[pk]
            for pk in sorted(versions)
            if pk in loaded or pk in known
        }
        return list(self._tasks.values())

    def _load(self, pks: list[int]) -> list[Task]:
        """These tasks, without their big columns (a task gone meanwhile is left out)."""
        lean = [defer(getattr(Task, name)) for name in _BIG_COLUMNS]
        tasks: list[Task] = []
        if not pks:
            return tasks
        with self._db.read() as session:
            for at in range(0, len(pks), _LOAD_CHUNK):
                tasks += session.scalars(
                    select(Task).where(col(Task.pk).in_(pks[at : at + _LOAD_CHUNK])).options(*lean)
                )
        return tasks

    def _requeues(self, task_id: str, reason: Reason) -> int:
        """How often the controller sent the task back to Pending for this reason."""
        with self._db.read() as session:
            count: int = session.execute(
                select(func.count())
                .select_from(Transition)
                .where(
                    col(Transition.task_id) == task_id,
                    col(Transition.reason) == reason,
                    col(Transition.to_phase) == Phase.PENDING,
                )
            ).scalar_one()
        return count

    def _record_stuck(
        self,
        tasks: list[Task],
        containers: dict[tuple[str, int], ObservedContainer],
        engine_ok: bool,
        now: datetime,
    ) -> None:
        """Write down which tasks make no progress and why; clear it once they move again."""
        changes = []
        for task in tasks:
            why = stuck_reason(
                _view(task),
                containers.get((task.id, task.attempt)),
                now,
                engine_ok=engine_ok,
                limits=self._stuck_limits,
            )
            if why != task.stuck_reason:
                changes.append((task, why))
        if not changes:
            return
        with self._db.write() as session:
            for task, why in changes:
                session.execute(
                    update(Task)
                    .where(col(Task.id) == task.id, col(Task.phase) == task.phase)
                    .values(
                        stuck_reason=why,
                        stuck_since=now if why else None,
                        resource_version=Task.resource_version + 1,
                    )
                )
                if why:
                    log.warning("task %s is stuck: %s", task.id, why, extra={"task_id": task.id})
            session.commit()

    def _compact_history(self, now: datetime) -> None:
        if self._compacted_at is not None and now - self._compacted_at < COMPACT_EVERY:
            return
        self._compacted_at = now
        compact_history(self._db, self._settings, now)

    def _holdings(self, tasks: list[Task], now: datetime) -> list[Holding]:
        holdings = []
        for task in tasks:
            if task.phase not in {Phase.SCHEDULED, Phase.RUNNING}:
                continue
            if task.deadline_at is not None:
                ends_in = (task.deadline_at - now).total_seconds()
            else:
                ends_in = task.timeout_seconds + START_ALLOWANCE_SECONDS
            holdings.append(
                Holding(
                    task.id,
                    tuple(task.assigned_cpus),
                    tuple(task.assigned_gpus),
                    task.ram_bytes,
                    task.storage_bytes,
                    max(ends_in, 0.0),
                )
            )
        return holdings

    def _schedule(
        self, pending: list[Task], host: HostCapacity, holdings: list[Holding], report: PassReport
    ) -> None:
        requests = [
            Request(t.id, t.cpu, t.gpu, t.ram_bytes, t.storage_bytes, float(t.timeout_seconds))
            for t in pending
        ]
        plan = place(requests, host.allocatable(), holdings)
        by_id = {t.id: t for t in pending}
        changed = [
            w
            for w in plan.waiting
            if (by_id[w.task_id].reason, by_id[w.task_id].message)
            != (Reason.UNSCHEDULABLE, w.message)
        ]
        # Starts first: the words for those that wait can wait for them.
        for placement in plan.placements:
            self._bind(by_id[placement.task_id], placement, report)
        for wait in plan.never_fits:
            message = f"can never fit this host: {wait.message}"
            self._end(
                by_id[wait.task_id], Phase.FAILED, Reason.EXCEEDS_CAPACITY, message, message, report
            )
        if changed:  # most passes change no one's reason: then they write nothing
            with self._db.write() as session:
                note_waiting(
                    session,
                    reason=Reason.UNSCHEDULABLE,
                    messages={wait.task_id: wait.message for wait in changed},
                )
                session.commit()

    def _keep_warm(self, tasks: list[Task], host: HostCapacity, now: datetime) -> None:
        """Size the warm pool to the RAM no task holds, for the sizes that start next."""
        holdings = self._holdings(tasks, now)
        waiting = [t.storage_bytes for t in tasks if t.phase == Phase.PENDING and not t.gpu]
        targets = warm_targets(
            size=self._settings.warm_pool_size,
            idle_ram=self._settings.warm_pool_idle_ram_bytes,
            free_ram=host.ram_allocatable - sum(h.ram for h in holdings),
            waiting_storage=waiting,
            recent_storage=list(self._recent_storage) or [self._settings.warm_pool_storage_bytes],
        )
        # Every pass: cheap, and a runtime that lost its pool (an engine restart) starts anew.
        self._runtime.keep_warm(
            [(self._template(storage), count) for storage, count in sorted(targets.items())]
        )

    def _template(self, storage: int) -> ContainerSpec:
        """A warm container's spec: a task's, with an idle memory limit and no task yet."""
        return self._spec(
            name="",
            labels={},
            cpus=(),
            cpu_quota=0.0,
            gpus=(),
            ram=self._settings.warm_pool_idle_ram_bytes,
            storage=storage,
            payload=b"",
            interactive=False,
        )

    def _spec(
        self,
        *,
        name: str,
        labels: dict[str, str],
        cpus: tuple[int, ...],
        cpu_quota: float,
        gpus: tuple[int, ...],
        ram: int,
        storage: int,
        payload: bytes,
        interactive: bool,
    ) -> ContainerSpec:
        """The one place container settings come from, for cold and warm containers alike."""
        return ContainerSpec(
            name=name,
            labels=labels,
            image=self._settings.image,
            cpus=cpus,
            all_cpus=self._host.cpu_ids if self._host else (),
            cpu_quota=cpu_quota or self._settings.best_effort_cpu_quota,
            gpus=gpus,
            ram=ram,
            storage=storage,
            pids_limit=self._settings.pids_limit,
            nofile_limit=self._settings.nofile_limit,
            payload=payload,
            interactive=interactive,
            # One bound for every task (the longest timeout's), so a warm container made
            # before its task was known serves any of them.
            log_limit=log_budget(
                self._settings.output_limit_bytes, self._settings.max_timeout_seconds
            ),
            docker_runtime=self._settings.docker_runtime,
        )

    def _bind(self, task: Task, placement: Placement, report: PassReport) -> None:
        # The placement is written durably before any container exists (at-most-once start).
        now = self._clock()
        cores = ", ".join(map(str, placement.cpus)) or "none (best effort)"
        with self._db.write() as session:
            moved = move(
                session,
                now=now,
                task_id=task.id,
                from_phase=Phase.PENDING,
                at_attempt=task.attempt,
                to_phase=Phase.SCHEDULED,
                reason=Reason.SCHEDULED,
                message=f"attempt {task.attempt} placed on CPU cores {cores}"
                + (f", GPUs {', '.join(map(str, placement.gpus))}" if placement.gpus else ""),
                assigned_cpus=list(placement.cpus),
                assigned_gpus=list(placement.gpus),
                scheduled_at=now,
            )
        if not moved:
            return
        crashpoint("after-bind")
        task.phase = Phase.SCHEDULED
        task.assigned_cpus, task.assigned_gpus = list(placement.cpus), list(placement.gpus)
        self._act(task, None, Start(), report)

    # --- acting on one decision ------------------------------------------------------------

    def _act(
        self, task: Task, container: ObservedContainer | None, action: Action, report: PassReport
    ) -> None:
        try:
            self._execute(task, container, action, report)
        except RuntimeUnavailable as exc:
            # Transient: the next pass looks again from scratch.
            self.stats.engine_errors += 1
            log.warning("task %s: %s; retrying next pass", task.id, exc, extra={"task_id": task.id})
        except Exception:
            # One task's failure never aborts the pass for the others.
            log.exception(
                "task %s: unexpected error; retrying next pass",
                task.id,
                extra={"task_id": task.id},
            )

    def _execute(
        self, task: Task, container: ObservedContainer | None, action: Action, report: PassReport
    ) -> None:
        now = self._clock()
        name = container_name(self._owner, task.id, task.attempt)
        match action:
            case Start(replace_unstarted=replace):
                if replace:
                    self._runtime.remove(name)
                self._start(task, name, report)
            case MarkRunning(started_at=started_at):
                # Adopted after a restart: the engine's start time, but never one in our future.
                self._mark_running(task, min(started_at or now, now))
            case Stop():
                # SIGKILL without waiting for the container to stop: its exit wakes the pass
                # that ends the task, with this outcome whatever its exit code.
                self._runtime.kill(name)
                self._stopping.setdefault(name, action)
            case Finish():
                self._finish(task, container, name, report, forced=self._stopping.get(name))
            case End(phase=phase, reason=reason, message=message):
                result = "cancelled" if phase == Phase.CANCELLED else message
                self._end(task, phase, reason, message, result, report)
                if container is not None:
                    self._runtime.remove(name)
            case Retry(reason=reason, message=message):
                self._stop_following(name)
                self._requeue(task, reason, message)
            case RemoveContainer():
                self._runtime.remove(name)
                report.removed.append(name)
            case Reset(to=to):
                self._reset(task, container, name, to, report)

    def _end(
        self,
        task: Task,
        phase: Phase,
        reason: Reason,
        message: str,
        result: str,
        report: PassReport,
    ) -> None:
        """End a task that has no container output to judge."""
        now = self._clock()
        with self._db.write() as session:
            if move(
                session,
                now=now,
                task_id=task.id,
                from_phase=Phase(task.phase),
                at_attempt=task.attempt,
                to_phase=phase,
                reason=reason,
                message=message,
                result=result,
                finished_at=now,
            ):
                report.finished.append(task.id)

    def _requeue(self, task: Task, reason: Reason, message: str) -> None:
        """Send a Running task back to Pending as its next attempt, its slots freed."""
        with self._db.write() as session:
            move(
                session,
                now=self._clock(),
                task_id=task.id,
                from_phase=Phase(task.phase),
                at_attempt=task.attempt,
                to_phase=Phase.PENDING,
                reason=reason,
                message=message,
                attempt=task.attempt + 1,
                assigned_cpus=[],
                assigned_gpus=[],
                scheduled_at=None,
                started_at=None,
                deadline_at=None,
            )

    def _reset(
        self,
        task: Task,
        container: ObservedContainer | None,
        name: str,
        to: Phase,
        report: PassReport,
    ) -> None:
        """Carry out an admin reset: stop and remove the container, free the slots, move. A
        running container is sent SIGKILL first, and the pass its exit wakes does the rest."""
        output = None
        if container is not None:
            if container.state in {"running", "paused", "restarting"}:
                self._runtime.kill(name)
                return
            self._stop_following(name)
            output = self._runtime.output(name)
            self._runtime.remove(name)
            report.removed.append(name)
        now = self._clock()
        cleared: dict[str, object] = {
            "reset_requested_to": None,
            "reset_requested_at": None,
            "stuck_reason": None,
            "stuck_since": None,
        }
        if to == Phase.PENDING:
            fields = cleared | {
                "attempt": task.attempt + 1,
                "assigned_cpus": [],
                "assigned_gpus": [],
                "cancel_requested_at": None,
                "scheduled_at": None,
                "started_at": None,
                "finished_at": None,
                "deadline_at": None,
                "result": None,
                "exit_code": None,
                "stdout": None,
                "stderr": None,
                "stdout_truncated": False,
                "stderr_truncated": False,
            }
            message = f"requeued by an admin as attempt {task.attempt + 1}"
        else:
            message = "failed by an admin"
            fields = cleared | {"result": message, "finished_at": now}
            if output is not None:
                # Whatever the task printed before the reset is kept, as for any other ending.
                kept = judge(_view(task), None, output, limit=self._settings.output_limit_bytes)
                fields |= {
                    "stdout": kept.stdout,
                    "stderr": kept.stderr,
                    "stdout_truncated": kept.stdout_truncated,
                    "stderr_truncated": kept.stderr_truncated,
                }
        with self._db.write() as session:
            if move(
                session,
                now=now,
                task_id=task.id,
                from_phase=Phase(task.phase),
                at_attempt=task.attempt,
                to_phase=to,
                reason=Reason.ADMIN_RESET,
                message=message,
                **fields,
            ):
                report.finished.append(task.id)

    def _start(self, task: Task, name: str, report: PassReport) -> None:
        with self._db.read() as session:
            code, stdin = session.execute(
                select(col(Task.code), col(Task.stdin)).where(col(Task.id) == task.id)
            ).one()
        spec = self._spec(
            name=name,
            labels={
                OWNER_LABEL: self._owner,
                TASK_LABEL: task.id,
                ATTEMPT_LABEL: str(task.attempt),
            },
            cpus=tuple(task.assigned_cpus),
            cpu_quota=float(task.cpu),
            gpus=tuple(task.assigned_gpus),
            ram=task.ram_bytes,
            storage=task.storage_bytes,
            payload=build_payload(
                code, stdin, self._settings.output_limit_bytes, interactive=task.interactive
            ),
            interactive=task.interactive,
        )
        self._recent_storage.append(task.storage_bytes)
        self._started_here.add(name)
        try:
            started = self._runtime.run(spec)
        except StartRejected as exc:
            self._end(task, Phase.FAILED, Reason.START_FAILED, str(exc), str(exc), report)
            self._runtime.remove(name)
            return
        crashpoint("after-start")
        report.started.append(task.id)
        self.stats.containers_started += 1
        # The deadline counts on the controller's clock, which is the one `decide` compares
        # it with; the engine's clock may differ (a VM, a remote engine).
        self._mark_running(task, self._clock())
        self._follow(task, name)
        if started.has_exited:
            self._finish(task, started, name, report, forced=None)

    def _mark_running(self, task: Task, started_at: datetime) -> None:
        deadline = started_at + timedelta(seconds=task.timeout_seconds)
        now = self._clock()
        with self._db.write() as session:
            if move(
                session,
                now=now,
                task_id=task.id,
                from_phase=Phase.SCHEDULED,
                at_attempt=task.attempt,
                to_phase=Phase.RUNNING,
                reason=Reason.STARTED,
                message=f"container started; deadline in {task.timeout_seconds} s",
                started_at=started_at,
                deadline_at=deadline,
            ):
                task.phase, task.started_at, task.deadline_at = Phase.RUNNING, started_at, deadline
                waited = (started_at - task.created_at).total_seconds()
                self.stats.submit_to_start_seconds.observe(max(waited, 0.0))

    def _finish(
        self,
        task: Task,
        container: ObservedContainer | None,
        name: str,
        report: PassReport,
        *,
        forced: Stop | None,
    ) -> None:
        if task.phase == Phase.SCHEDULED and container is not None and container.started_at:
            self._mark_running(task, min(container.started_at, self._clock()))
        if container is not None and container.started_at is None and task.started_at:
            # A warm container's engine start time predates its task: the task's own counts.
            container = replace(container, started_at=task.started_at)
        # The reader's copy where it is whole: the engine's log of a container that is still
        # exiting answers only once the engine is done with the exit (tens of milliseconds).
        output = self._stop_following(name) or self._runtime.output(name)
        outcome = judge(
            _view(task),
            container,
            output,
            limit=self._settings.output_limit_bytes,
            forced=forced,
            adopted=name not in self._started_here,
        )
        if outcome.phase == Phase.PENDING:
            self._requeue(task, outcome.reason, outcome.message)
            self._runtime.remove(name)
            return
        now = self._clock()
        finished_at = container.finished_at if container and container.finished_at else now
        crashpoint("after-exit")
        with self._db.write() as session:
            moved = move(
                session,
                now=now,
                task_id=task.id,
                from_phase=Phase(task.phase),
                at_attempt=task.attempt,
                to_phase=outcome.phase,
                reason=outcome.reason,
                message=outcome.message,
                result=outcome.result,
                exit_code=outcome.exit_code,
                stdout=outcome.stdout,
                stderr=outcome.stderr,
                stdout_truncated=outcome.stdout_truncated,
                stderr_truncated=outcome.stderr_truncated,
                finished_at=finished_at,
            )
        if moved:
            report.finished.append(task.id)
            if task.started_at is not None:
                ran = (finished_at - task.started_at).total_seconds()
                self.stats.run_seconds.observe(max(ran, 0.0))
        # Removed only once the outcome is durable: a crash before this line leaves a terminal
        # task with a container, which the next pass removes.
        crashpoint("after-status")
        if name in self._judged_early:
            # Judged at its report, so its container may still be exiting: its cores and
            # memory stay held until the engine shows it stopped (see `reconcile_once`).
            self._judged_early.discard(name)
            self._draining[name] = Holding(
                task.id,
                tuple(task.assigned_cpus),
                tuple(task.assigned_gpus),
                task.ram_bytes,
                task.storage_bytes,
                0.0,
            )
        with self._removing_lock:
            self._removing.add(name)
        self._runtime.remove_soon(name, then=lambda: self._removed(name))

    def _removed(self, name: str) -> None:
        """A background removal ended (gone, or a later pass removes it): wake a pass."""
        with self._removing_lock:
            self._removing.discard(name)
        if self.wake_hook is not None:
            self.wake_hook()

    def _collect_garbage(
        self, observed: list[ObservedContainer], tasks: list[Task], report: PassReport
    ) -> None:
        """Remove our containers whose task is gone, terminal, or on a later attempt."""
        current = {t.id: t.attempt for t in tasks}
        with self._removing_lock:
            removing = set(self._removing)
        for container in observed:
            if current.get(container.task_id) == container.attempt or container.name in removing:
                continue
            if container.task_id in current and container.attempt > current[container.task_id]:
                continue  # cannot happen by our own hand; leave it rather than guess
            try:
                self._runtime.remove(container.name)  # forced: a running one is killed first
                report.removed.append(container.name)
            except RuntimeUnavailable as exc:
                log.warning(
                    "cannot remove %s: %s",
                    container.name,
                    exc,
                    extra={"task_id": container.task_id},
                )
