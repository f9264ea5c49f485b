"""The last step of a reconcile pass: `Executor.run` carries out a plan's effects in order.

Each effect is idempotent: every phase change is a guarded `move()` (it moves a task only from
the phase and attempt the plan saw), container names are deterministic, and "already gone" is
success. The crash points (`controller.crashpoints`) sit between the effects of a start and of
an ending, where the crash matrix expects them. One task's failure never aborts the pass: an
engine error is retried by the next pass, which observes afresh. `controller.loop` runs it.
"""

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import partial

from sqlalchemy import select
from sqlmodel import col

from controller import status
from controller.compaction import compact_history
from controller.crashpoints import crashpoint
from controller.effects import (
    Bind,
    CompactHistory,
    Converge,
    Effect,
    Follow,
    ForwardInput,
    KeepWarm,
    NeverFits,
    NoteWaiting,
    RecordStuck,
    RemoveOrphan,
    WriteCapacity,
)
from controller.errors import RuntimeUnavailable, StartRejected
from controller.following import Followers
from controller.input_forwarding import InputForwarder
from controller.memory import PassMemory
from controller.observe import Observation, TaskRecord
from controller.programs import image_of, kept_files, program_of, runtime_of, usage_of
from controller.reconcile import (
    End,
    Exit,
    Finish,
    MarkRunning,
    Outcome,
    RemoveContainer,
    Reset,
    Retry,
    Start,
    Stop,
    judge,
)
from controller.removals import Removals
from controller.runtime import (
    ATTEMPT_LABEL,
    OWNER_LABEL,
    TASK_LABEL,
    CapturedOutput,
    ContainerRuntime,
    ContainerSpec,
)
from controller.scheduling import Holding
from controller.specs import container_spec
from controller.stats import ControllerStats
from controller.status import move, note_waiting
from models.database import Database
from models.phases import Phase, Reason
from models.runtimes import Runtime
from models.settings import Settings
from models.tables import Capacity, Task, next_attempt
from sandbox.supervisor import build_payload

log = logging.getLogger("taskyard.controller")


@dataclass
class PassReport:
    """What one pass did, for logs and tests."""

    started: list[str] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    runtime_ok: bool = True
    next_deadline: datetime | None = None


class Executor:
    def __init__(
        self,
        settings: Settings,
        database: Database,
        runtime: ContainerRuntime,
        *,
        owner: str,
        clock: Callable[[], datetime],
        stats: ControllerStats,
        memory: PassMemory,
        followers: Followers,
        removals: Removals,
        input_forwarder: InputForwarder,
        wake: Callable[[], None],
    ) -> None:
        self._settings = settings
        self._db = database
        self._runtime = runtime
        self._owner = owner
        self._clock = clock
        self._stats = stats
        self._memory = memory
        self._followers = followers
        self._removals = removals
        self._input = input_forwarder
        self._wake = wake

    def run(self, effects: Sequence[Effect], seen: Observation, report: PassReport) -> None:
        """Carry out `effects` in order, on the world `seen` was read from."""
        for effect in effects:
            match effect:
                case Follow(task=task, name=name):
                    self._followers.follow(task.id, task.attempt, name)
                case Converge(task=task):
                    self._guarded(task, partial(self._converge, effect, seen, report))
                case RemoveOrphan(name=name, task_id=task_id):
                    try:
                        self._runtime.remove(name)  # forced: a running one is killed first
                        report.removed.append(name)
                    except RuntimeUnavailable as exc:
                        log.warning("cannot remove %s: %s", name, exc, extra={"task_id": task_id})
                case ForwardInput(running=running):
                    self._input.forward(list(running))
                case Bind():
                    self._bind(effect, seen, report)
                case NeverFits(task=task, message=message):
                    self._end(task, Phase.FAILED, Reason.EXCEEDS_CAPACITY, message, message, report)
                case NoteWaiting(reason=reason, messages=messages):
                    with self._db.write() as session:
                        note_waiting(session, reason=reason, messages=dict(messages))
                        session.commit()
                case KeepWarm(wanted=wanted):
                    self._runtime.keep_warm(list(wanted))
                case RecordStuck(changes=changes, at=at):
                    status.record_stuck(self._db, changes, at)
                case CompactHistory(at=at):
                    self._memory.compacted_at = at
                    compact_history(self._db, self._settings, at)
                case WriteCapacity(fields=fields, at=at):
                    self._write_capacity(dict(fields), at)

    def _guarded(self, task: TaskRecord, step: Callable[[], None]) -> None:
        try:
            step()
        except RuntimeUnavailable as exc:
            # Transient: the next pass looks again from scratch.
            self._stats.engine_errors += 1
            log.warning("task %s: %s; retrying next pass", task.id, exc, extra={"task_id": task.id})
        except Exception:
            # One task's failure never aborts the pass for the others.
            log.exception(
                "task %s: unexpected error; retrying next pass",
                task.id,
                extra={"task_id": task.id},
            )

    def _converge(self, step: Converge, seen: Observation, report: PassReport) -> None:
        task, name = step.task, step.name
        match step.decision:
            case Start(replace_unstarted=unstarted):
                if unstarted:
                    self._runtime.remove(name)
                self._start(task, name, seen, report)
            case MarkRunning(started_at=started_at):
                # Adopted after a restart: the engine's start time, but never one in our future.
                now = self._clock()
                self._mark_running(task, min(started_at or now, now))
            case Stop() as stop:
                # SIGKILL without waiting for the container to stop: its exit wakes the pass
                # that ends the task, with this outcome whatever its exit code.
                self._runtime.kill(name)
                self._memory.stopping.setdefault(name, stop)
            case Finish():
                self._finish(
                    task, name, step.ended, report, forced=step.forced, adopted=step.adopted
                )
            case End(phase=phase, reason=reason, message=message):
                result = "cancelled" if phase == Phase.CANCELLED else message
                self._end(task, phase, reason, message, result, report)
                if step.has_container:
                    self._runtime.remove(name)
            case Retry(reason=reason, message=message):
                self._stop_following(name)
                self._requeue(task, reason, message)
            case RemoveContainer():
                self._runtime.remove(name)
                report.removed.append(name)
            case Reset(to=to):
                if step.running:
                    self._runtime.kill(name)  # the pass its exit wakes does the rest
                    return
                self._reset(task, name, to, report, has_container=step.has_container)

    # --- starting -----------------------------------------------------------------------

    def _bind(self, bind: Bind, seen: Observation, report: PassReport) -> None:
        # The placement is written durably before any container exists (at-most-once start).
        now = self._clock()
        cpus, gpus = bind.placement.cpus, bind.placement.gpus
        with self._db.write() as session:
            moved = move(
                session,
                now=now,
                task_id=bind.task.id,
                from_phase=Phase.PENDING,
                at_attempt=bind.task.attempt,
                to_phase=Phase.SCHEDULED,
                reason=Reason.SCHEDULED,
                message=bind.message,
                assigned_cpus=list(cpus),
                assigned_gpus=list(gpus),
                scheduled_at=now,
            )
        if not moved:
            return
        crashpoint("after-bind")
        task = replace(
            bind.task,
            phase=Phase.SCHEDULED,
            assigned_cpus=cpus,
            assigned_gpus=gpus,
            scheduled_at=now,
        )
        self._guarded(task, partial(self._start, task, bind.name, seen, report))

    def _start(self, task: TaskRecord, name: str, seen: Observation, report: PassReport) -> None:
        runtime = runtime_of(task.runtime)
        if runtime is None:
            message = f"runtime {task.runtime!r} is unknown to this controller"
            self._end(task, Phase.FAILED, Reason.START_FAILED, message, message, report)
            return
        spec = self._task_spec(task, name, runtime, seen)
        self._memory.recent_starts.append((runtime.name, task.storage_bytes))
        self._memory.started_here.add(name)
        try:
            started = self._runtime.run(spec)
        except StartRejected as exc:
            self._end(task, Phase.FAILED, Reason.START_FAILED, str(exc), str(exc), report)
            self._runtime.remove(name)
            return
        crashpoint("after-start")
        report.started.append(task.id)
        self._stats.containers_started += 1
        # The deadline counts on the controller's clock, which is the one `decide` compares
        # it with; the engine's clock may differ (a VM, a remote engine).
        task = self._mark_running(task, self._clock())
        self._followers.follow(task.id, task.attempt, name)
        if started.has_exited:
            ended = Exit.from_engine(started, task.started_at)
            self._finish(task, name, ended, report, forced=None, adopted=False)

    def _task_spec(
        self, task: TaskRecord, name: str, runtime: Runtime, seen: Observation
    ) -> ContainerSpec:
        """The attempt's container: its runtime's image, and the code with what the task
        brings (read now: the big columns are not in the pass's records)."""
        with self._db.read() as session:
            code, stdin, files, args, env, collect = session.execute(
                select(
                    col(Task.code),
                    col(Task.stdin),
                    col(Task.files),
                    col(Task.args),
                    col(Task.env),
                    col(Task.collect),
                ).where(col(Task.id) == task.id)
            ).one()
        program = program_of(
            runtime,
            files=files,
            args=args,
            env=env,
            collect=collect,
            timeout_seconds=task.timeout_seconds,
            settings=self._settings,
        )
        limit = self._settings.output_limit_bytes
        return container_spec(
            self._settings,
            all_cpus=seen.host.cpu_ids,
            name=name,
            labels={
                OWNER_LABEL: self._owner,
                TASK_LABEL: task.id,
                ATTEMPT_LABEL: str(task.attempt),
            },
            cpus=task.assigned_cpus,
            cpu_quota=float(task.cpu),
            gpus=task.assigned_gpus,
            ram=task.ram_bytes,
            storage=task.storage_bytes,
            payload=build_payload(
                code, stdin, limit, interactive=task.interactive, program=program
            ),
            interactive=task.interactive,
            image=image_of(runtime, self._settings),
            exec_work=runtime.exec_work,
        )

    def _mark_running(self, task: TaskRecord, started_at: datetime) -> TaskRecord:
        """Move Scheduled to Running; the task as it now stands."""
        running = status.mark_running(
            self._db,
            task,
            started_at,
            now=self._clock(),
            grace=self._settings.supervisor_deadline_grace_seconds,
        )
        if running is None:
            return task
        waited = (started_at - task.created_at).total_seconds()
        self._stats.submit_to_start_seconds.observe(max(waited, 0.0))
        return running

    # --- ending -------------------------------------------------------------------------

    def _finish(
        self,
        task: TaskRecord,
        name: str,
        ended: Exit | None,
        report: PassReport,
        *,
        forced: Stop | None,
        adopted: bool,
    ) -> None:
        """Judge how the code ended, write the outcome, then remove the container."""
        if task.phase == Phase.SCHEDULED and ended is not None and ended.started_at:
            task = self._mark_running(task, min(ended.started_at, self._clock()))
        # The reader's copy where it is whole: the engine's log of a container that is still
        # exiting answers only once the engine is done with the exit (tens of milliseconds).
        output = self._stop_following(name) or self._runtime.output(name)
        limit = self._settings.output_limit_bytes
        outcome = judge(task.view(), ended, output, limit=limit, forced=forced, adopted=adopted)
        if outcome.phase == Phase.PENDING:
            self._requeue(task, outcome.reason, outcome.message)
            self._runtime.remove(name)
            return
        now = self._clock()
        finished_at = ended.finished_at if ended and ended.finished_at else now
        crashpoint("after-exit")
        files, files_truncated = kept_files(
            output.files,
            output.files_truncated or bool(output.report and output.report.files_truncated),
            self._settings,
        )
        outcome = replace(
            outcome, files=files, files_truncated=files_truncated, usage=usage_of(output.report)
        )
        self._record(task, outcome, finished_at, now, report)
        # Removed only once the outcome is durable: a crash before this line leaves a terminal
        # task with a container, which the next pass removes.
        crashpoint("after-status")
        if ended is not None and ended.from_report:
            # Judged at its report, so its container may still be exiting: its cores and
            # memory stay held until the engine shows it stopped (`memory.forget_past`).
            self._memory.draining[name] = Holding(
                task.id,
                task.assigned_cpus,
                task.assigned_gpus,
                task.ram_bytes,
                task.storage_bytes,
                0.0,
            )
        self._removals.add(name)
        self._runtime.remove_soon(name, then=lambda: self._removal_ended(name))

    def _record(
        self,
        task: TaskRecord,
        outcome: Outcome,
        finished_at: datetime,
        now: datetime,
        report: PassReport,
    ) -> None:
        if not status.record_outcome(self._db, task, outcome, finished_at, now=now):
            return
        report.finished.append(task.id)
        if task.started_at is not None:
            ran = (finished_at - task.started_at).total_seconds()
            self._stats.run_seconds.observe(max(ran, 0.0))

    def _removal_ended(self, name: str) -> None:
        """A background removal ended (gone, or a later pass removes it): wake a pass."""
        self._removals.discard(name)
        self._wake()

    def _stop_following(self, name: str) -> CapturedOutput | None:
        self._input.forget(name)
        return self._followers.stop(name)

    def _end(
        self,
        task: TaskRecord,
        phase: Phase,
        reason: Reason,
        message: str,
        result: str,
        report: PassReport,
    ) -> None:
        if status.end(self._db, task, phase, reason, message, result, now=self._clock()):
            report.finished.append(task.id)

    def _requeue(self, task: TaskRecord, reason: Reason, message: str) -> None:
        status.requeue(self._db, task, reason, message, now=self._clock())

    def _reset(
        self, task: TaskRecord, name: str, to: Phase, report: PassReport, *, has_container: bool
    ) -> None:
        """Carry out an admin reset of a task whose container is stopped or gone: remove the
        container, free the slots, move."""
        output = None
        if has_container:
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
            # A cancelled task requeued by an admin runs: the cancellation is of the past.
            fields = cleared | next_attempt(task.attempt) | {"cancel_requested_at": None}
            message = f"requeued by an admin as attempt {task.attempt + 1}"
        else:
            message = "failed by an admin"
            fields = cleared | {"result": message, "finished_at": now}
            if output is not None:
                # Whatever the task printed before the reset is kept, as for any other ending.
                limit = self._settings.output_limit_bytes
                kept = judge(task.view(), None, output, limit=limit)
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
                from_phase=task.phase,
                at_attempt=task.attempt,
                to_phase=to,
                reason=Reason.ADMIN_RESET,
                message=message,
                **fields,
            ):
                report.finished.append(task.id)

    # --- upkeep -------------------------------------------------------------------------

    def _write_capacity(self, fields: dict[str, object], at: datetime) -> None:
        with self._db.write() as session:
            row = session.get(Capacity, "local") or Capacity(node="local")
            for name, value in fields.items():
                setattr(row, name, value)
            row.stats = self._stats.dump()
            row.heartbeat_at = at
            session.add(row)
            session.commit()
        self._memory.capacity_written = fields
        self._memory.heartbeat_at = at
