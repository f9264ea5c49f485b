"""The pure middle of a reconcile pass: from an `Observation` and the `PassMemory`, the list of
`Effect`s that moves the world toward what the tasks ask for. No database, no engine, no
clock: `controller.loop` calls these between `controller.observe` and `controller.act`.

A pass plans in three rounds, each on the tasks as the previous round left them:
- `plan_tasks`: each task in flight against its container (`reconcile.decide`), and the
  containers no task owns;
- `plan_queue`: stdin for interactive tasks, then the queue (`scheduling.place`) on the slots
  the first round freed, so that a task that ended makes room in the same pass;
- `plan_upkeep` and `plan_capacity`: the warm pool, stuck tasks, compaction, and the capacity
  row with the heartbeat.
"""

from collections.abc import Mapping
from datetime import datetime, timedelta

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
from controller.memory import PassMemory
from controller.observe import Observation, TaskRecord
from controller.reconcile import (
    SUPERVISOR_ERROR_EXIT_CODE,
    Exit,
    Noop,
    StuckLimits,
    decide,
    stuck_reason,
)
from controller.runtime import ContainerSpec, ObservedContainer
from controller.scheduling import Holding, Placement, Request, place
from controller.specs import warm_template
from controller.warm_pool import warm_targets
from models.phases import Phase, Reason
from models.runtimes import BY_NAME, DEFAULT_RUNTIME
from models.settings import Settings
from sandbox.supervisor import Report

COMPACT_EVERY = timedelta(seconds=60)
HEARTBEAT_EVERY = timedelta(seconds=3)  # at most; a quarter of the staleness limit if less
# A scheduled task has not started yet; allow this much on top of its timeout when guessing
# when it frees its slots.
START_ALLOWANCE_SECONDS = 5.0
IN_FLIGHT = frozenset({Phase.SCHEDULED, Phase.RUNNING})
RUNNING_STATES = frozenset({"running", "paused", "restarting"})


def exit_of(
    task: TaskRecord, container: ObservedContainer | None, report: Report | None, now: datetime
) -> Exit | None:
    """How the attempt's code ended, where it has: from the supervisor's report while the
    engine still shows the container running (or lists it without its exit record), else
    from the engine's exit record. Judging at the report saves the engine's exit handling
    (tens of milliseconds) on every task; the container is not inspected again, since the
    engine locks it while it handles the exit."""
    if container is None:
        return None
    if report is not None and (container.state == "running" or container.exit_code is None):
        return Exit(
            exit_code=SUPERVISOR_ERROR_EXIT_CODE if report.exit_code is None else report.exit_code,
            started_at=task.started_at or container.started_at,
            finished_at=now,
            oom_killed=container.oom_killed,
            sandboxed=container.sandboxed,
            from_report=True,
        )
    if container.has_exited:
        return Exit.from_engine(container, task.started_at)
    return None


# --- round one: the tasks in flight ------------------------------------------------------


def plan_tasks(seen: Observation, memory: PassMemory) -> list[Effect]:
    """Each task's next step against its container, then the removal of orphans."""
    effects: list[Effect] = []
    for task in seen.tasks:
        if seen.containers is None and task.phase in IN_FLIGHT:
            continue  # cannot tell a lost container from an unreachable engine
        container = seen.container_of(task)
        if container is not None and container.state == "running":
            effects.append(Follow(task, seen.name_of(task)))
        step = converge(task, container, seen, memory)
        if step is not None:
            effects.append(step)
    if seen.containers is not None:
        effects += [RemoveOrphan(c.name, c.task_id) for c in orphans(seen)]
    return effects


def converge(
    task: TaskRecord, container: ObservedContainer | None, seen: Observation, memory: PassMemory
) -> Converge | None:
    """The step that moves one task toward its desired state; None where none is due."""
    name = seen.name_of(task)
    ended = exit_of(task, container, seen.reports.get(name), seen.now)
    reported = ended is not None and ended.from_report
    forced = memory.stopping.get(name)
    view = task.view(stopping=forced, containers_lost=seen.containers_lost.get(task.id, 0))
    decision = decide(view, container, seen.now, reported=reported)
    if isinstance(decision, Noop):
        return None
    return Converge(
        task,
        name,
        decision,
        has_container=container is not None,
        running=container is not None and container.state in RUNNING_STATES and not reported,
        ended=ended,
        forced=forced,
        adopted=name not in memory.started_here,
    )


def orphans(seen: Observation) -> list[ObservedContainer]:
    """Our containers whose task is gone, terminal, or on a later attempt."""
    current = {task.id: task.attempt for task in seen.tasks}
    found = []
    for container in (seen.containers or {}).values():
        if current.get(container.task_id) == container.attempt or container.name in seen.removing:
            continue
        if container.task_id in current and container.attempt > current[container.task_id]:
            continue  # cannot happen by our own hand; leave it rather than guess
        found.append(container)
    return found


# --- round two: stdin, and the queue -----------------------------------------------------


def plan_queue(seen: Observation, memory: PassMemory, *, before: Observation) -> list[Effect]:
    """Stdin for the interactive tasks running at the pass's start or now (`before`: the
    first round's observation), then placements, with words for those that wait."""
    effects: list[Effect] = []
    if before.containers is not None:
        running = _interactive_running(before, seen)
        if running:
            effects.append(ForwardInput(running))
    pending = [
        task
        for task in seen.tasks
        if task.phase == Phase.PENDING
        and task.cancel_requested_at is None
        and task.reset_requested_to is None
    ]
    by_id = {task.id: task for task in pending}
    if not seen.health.ok:
        waiting = {task.id: seen.health.message for task in pending}
        return effects + _notes(by_id, Reason.RUNTIME_UNAVAILABLE, waiting)
    # A task whose runtime's image is missing cannot run at all: it holds no place in the
    # queue, so it keeps no one behind it waiting.
    missing = {
        task.id: _missing_runtime(task.runtime, seen.health.runtimes)
        for task in pending
        if task.runtime not in seen.health.runtimes
    }
    pending = [task for task in pending if task.id not in missing]
    requests = [
        Request(t.id, t.cpu, t.gpu, t.ram_bytes, t.storage_bytes, float(t.timeout_seconds))
        for t in pending
    ]
    placed = place(requests, seen.host.allocatable(), [*holdings(seen), *memory.draining.values()])
    # Starts first: the words for those that wait can wait for them.
    for placement in placed.placements:
        task = by_id[placement.task_id]
        effects.append(
            Bind(task, seen.name_of(task), placement, _placement_message(task, placement))
        )
    for wait in placed.never_fits:
        effects.append(NeverFits(by_id[wait.task_id], f"can never fit this host: {wait.message}"))
    waiting = {wait.task_id: wait.message for wait in placed.waiting}
    return (
        effects
        + _notes(by_id, Reason.RUNTIME_UNAVAILABLE, missing)
        + _notes(by_id, Reason.UNSCHEDULABLE, waiting)
    )


def _missing_runtime(name: str, installed: Mapping[str, object]) -> str:
    return (
        f"runtime {name} is not installed on this host (installed: "
        f"{', '.join(sorted(installed)) or 'none'}): taskyard image build --runtime {name}"
    )


def _interactive_running(before: Observation, seen: Observation) -> tuple[tuple[str, str], ...]:
    """In the first round's order and under its attempts; with those that ended in the first
    round too (their stdin is closed, so their waiting input is dropped)."""
    interactive = [task for task in before.tasks if task.interactive]
    if not interactive:
        return ()
    running_now = {task.id for task in seen.tasks if task.phase == Phase.RUNNING}
    return tuple(
        (task.id, before.name_of(task))
        for task in interactive
        if task.phase == Phase.RUNNING or task.id in running_now
    )


def _placement_message(task: TaskRecord, placement: Placement) -> str:
    cores = ", ".join(map(str, placement.cpus)) or "none (best effort)"
    gpus = f", GPUs {', '.join(map(str, placement.gpus))}" if placement.gpus else ""
    return f"attempt {task.attempt} placed on CPU cores {cores}{gpus}"


def _notes(by_id: dict[str, TaskRecord], reason: Reason, messages: dict[str, str]) -> list[Effect]:
    """A note for the waiting tasks whose words changed; most passes change none, and then
    write nothing."""
    changed = {
        task_id: message
        for task_id, message in messages.items()
        if (by_id[task_id].reason, by_id[task_id].message) != (reason, message)
    }
    return [NoteWaiting(reason, changed)] if changed else []


def holdings(seen: Observation) -> list[Holding]:
    """What each scheduled or running task holds, and an upper bound on when it ends."""
    held = []
    for task in seen.tasks:
        if task.phase not in IN_FLIGHT:
            continue
        if task.deadline_at is not None:
            ends_in = (task.deadline_at - seen.now).total_seconds()
        else:
            ends_in = task.timeout_seconds + START_ALLOWANCE_SECONDS
        held.append(
            Holding(
                task.id,
                task.assigned_cpus,
                task.assigned_gpus,
                task.ram_bytes,
                task.storage_bytes,
                max(ends_in, 0.0),
            )
        )
    return held


# --- round three: upkeep -----------------------------------------------------------------


def plan_upkeep(
    seen: Observation, memory: PassMemory, settings: Settings, *, at: datetime
) -> list[Effect]:
    """The warm pool, stuck tasks (as of `at`) and, once a minute, compaction."""
    effects: list[Effect] = []
    if seen.health.ok:
        # Every pass: cheap, and a runtime that lost its pool (an engine restart) starts anew.
        effects.append(KeepWarm(warm_pool(seen, memory, settings)))
    changes = stuck_changes(seen, settings, at)
    if changes:
        effects.append(RecordStuck(changes, at))
    if memory.compacted_at is None or seen.now - memory.compacted_at >= COMPACT_EVERY:
        effects.append(CompactHistory(seen.now))
    return effects


def stuck_changes(
    seen: Observation, settings: Settings, at: datetime
) -> tuple[tuple[TaskRecord, str | None], ...]:
    """The tasks whose stuck reason changed as of `at`, with the new one (None: moving)."""
    limits = StuckLimits(settings.stuck_grace_seconds, settings.pending_stuck_seconds)
    changes = []
    for task in seen.tasks:
        container = seen.container_of(task)
        why = stuck_reason(task.view(), container, at, engine_ok=seen.health.ok, limits=limits)
        if why != task.stuck_reason:
            changes.append((task, why))
    return tuple(changes)


def warm_pool(
    seen: Observation, memory: PassMemory, settings: Settings
) -> tuple[tuple[ContainerSpec, int], ...]:
    """Size the warm pool to the RAM no task holds, for the runtimes and sizes that start
    next (of the runtimes the engine holds)."""
    installed = seen.health.runtimes
    targets = warm_targets(
        size=settings.warm_pool_size,
        idle_ram=settings.warm_pool_idle_ram_bytes,
        free_ram=seen.host.ram_allocatable - sum(h.ram for h in holdings(seen)),
        waiting=[
            (t.runtime, t.storage_bytes)
            for t in seen.tasks
            if t.phase == Phase.PENDING and not t.gpu and t.runtime in installed
        ],
        recent=[shape for shape in memory.recent_starts if shape[0] in installed]
        or [(DEFAULT_RUNTIME, settings.warm_pool_storage_bytes)],
        slots=len(seen.host.cpu_ids),
    )
    return tuple(
        (warm_template(settings, seen.host.cpu_ids, storage, BY_NAME[runtime]), count)
        for (runtime, storage), count in sorted(targets.items())
    )


def plan_capacity(seen: Observation, memory: PassMemory, settings: Settings) -> list[Effect]:
    """Rewrite the capacity row where it changed, and the heartbeat now and again. A pass
    that changes nothing writes nothing else: the database watcher would take the commit for
    new work and wake another pass."""
    held = holdings(seen)
    host = seen.host
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
        "allocated_cpus": sorted(cpu for h in held for cpu in h.cpus),
        "allocated_gpus": sorted(gpu for h in held for gpu in h.gpus),
        "allocated_ram": sum(h.ram for h in held),
        "allocated_storage": sum(h.storage for h in held),
        "runtime_ok": seen.health.ok,
        "runtime_message": seen.health.message,
        "runtimes": dict(seen.health.runtimes),
    }
    every = min(HEARTBEAT_EVERY, timedelta(seconds=settings.controller_stale_seconds / 4))
    due = memory.heartbeat_at is None or seen.now - memory.heartbeat_at >= every
    if fields == memory.capacity_written and not due:
        return []
    return [WriteCapacity(fields, seen.now)]


def next_deadline(seen: Observation, memory: PassMemory) -> datetime | None:
    """The earliest deadline of a running task; not of those already being killed: their
    exit, not the clock, wakes the pass that ends them."""
    deadlines = [
        task.deadline_at
        for task in seen.tasks
        if task.deadline_at
        and task.phase == Phase.RUNNING
        and seen.name_of(task) not in memory.stopping
    ]
    return min(deadlines, default=None)
