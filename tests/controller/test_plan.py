"""The whole plan of a reconcile pass as truth tables (`controller.plan`): a world as observed
and what the last pass remembered go in, the list of effects comes out. No database, no engine,
no clock, no fake runtime: each row builds an `Observation` by hand.

Effects are compared in a short written form (`said`), so that each row reads as a sentence:
"a running task whose supervisor reported: follow, then finish with the reported exit code".
"""

from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controller.capacity import HostCapacity
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
from controller.memory import PassMemory, forget_past
from controller.observe import Observation, TaskRecord
from controller.plan import next_deadline, plan_capacity, plan_queue, plan_tasks, plan_upkeep
from controller.reconcile import (
    End,
    Finish,
    MarkRunning,
    RemoveContainer,
    Reset,
    Retry,
    Start,
    Stop,
)
from controller.runtime import ObservedContainer, RuntimeHealth, container_name
from controller.scheduling import Holding
from models.phases import Phase, Reason
from models.quantities import GIB, MIB, format_size
from models.settings import Settings
from sandbox.supervisor import Report

OWNER = "owner"
NOW = datetime(2026, 12, 7, 12, 0, 0, tzinfo=UTC)
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
SETTINGS = Settings(warm_pool_size=2, warm_pool_idle_ram="32MB", warm_pool_storage="512MB")
LONG_AGO = NOW - timedelta(hours=1)


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


# The runtimes whose images the engine holds, as its health says.
INSTALLED: dict[str, dict[str, Any]] = {"python": {}, "bash": {}}


def task(task_id: str = "t", phase: Phase = Phase.RUNNING, **changes: Any) -> TaskRecord:
    in_flight = phase in {Phase.SCHEDULED, Phase.RUNNING}
    running = phase == Phase.RUNNING
    record = TaskRecord(
        pk=int.from_bytes(task_id.encode(), "big") % 10_000,
        id=task_id,
        resource_version=1,
        phase=phase,
        reason="Created",
        message="",
        attempt=1,
        created_at=ago(10),
        cpu=1,
        gpu=0,
        ram_bytes=64 * MIB,
        storage_bytes=100 * MIB,
        timeout_seconds=30,
        interactive=False,
        runtime="python",
        cancel_requested_at=None,
        reset_requested_to=None,
        scheduled_at=ago(5) if in_flight else None,
        started_at=ago(4) if running else None,
        deadline_at=ago(4) + timedelta(seconds=30) if running else None,
        assigned_cpus=(0,) if in_flight else (),
        assigned_gpus=(),
        stuck_reason=None,
    )
    return replace(record, **changes)


def name(task_id: str = "t", attempt: int = 1) -> str:
    return container_name(OWNER, task_id, attempt)


def container(
    state: str, task_id: str = "t", attempt: int = 1, **changes: Any
) -> ObservedContainer:
    exited = state == "exited"
    return ObservedContainer(
        name=name(task_id, attempt),
        task_id=task_id,
        attempt=attempt,
        state=state,
        exit_code=changes.pop("exit_code", 0 if exited else None),
        started_at=None if state == "created" else ago(4),
        finished_at=ago(1) if exited else None,
        **changes,
    )


def world(
    tasks: Iterable[TaskRecord] = (),
    containers: Iterable[ObservedContainer] | None = (),
    *,
    reports: dict[str, Report] | None = None,
    lost: dict[str, int] | None = None,
    removing: Iterable[str] = (),
    engine_ok: bool = True,
) -> Observation:
    listed = None if containers is None else {(c.task_id, c.attempt): c for c in containers}
    message = "engine ok" if engine_ok else "engine unreachable"
    return Observation(
        now=NOW,
        owner=OWNER,
        health=RuntimeHealth(ok=engine_ok, message=message, runtimes=INSTALLED),
        host=HOST,
        tasks=tuple(tasks),
        containers=listed,
        reports=reports or {},
        containers_lost=lost or {},
        removing=frozenset(removing),
    )


def memory(**fields: Any) -> PassMemory:
    return PassMemory(**fields)


def said(effects: Iterable[Effect]) -> list[str]:
    """Each effect in a few words."""
    return [_say(effect) for effect in effects]


def _say(effect: Effect) -> str:
    match effect:
        case Follow(task=t):
            return f"follow {t.id}"
        case Converge():
            return _say_step(effect)
        case RemoveOrphan(name=n):
            return f"remove orphan {n}"
        case ForwardInput(running=running):
            return "forward input to " + ", ".join(task_id for task_id, _ in running)
        case Bind(task=t, placement=p):
            return f"bind {t.id} to cores {list(p.cpus)}"
        case NeverFits(task=t):
            return f"fail {t.id}: never fits"
        case NoteWaiting(reason=reason, messages=messages):
            return f"note {reason} for " + ", ".join(messages)
        case KeepWarm(wanted=wanted):
            return "keep warm " + ", ".join(f"{n} of {format_size(s.storage)}" for s, n in wanted)
        case RecordStuck(changes=changes):
            return "stuck: " + ", ".join(f"{t.id}={'yes' if why else 'no'}" for t, why in changes)
        case CompactHistory():
            return "compact"
        case WriteCapacity():
            return "write capacity"


def _say_step(step: Converge) -> str:
    match step.decision:
        case Start(replace_unstarted=unstarted):
            return "start, replacing the unstarted" if unstarted else "start"
        case MarkRunning():
            return "mark running"
        case Stop(phase=phase):
            return f"kill for {phase}"
        case Finish():
            how = "gone" if step.ended is None else f"exit {step.ended.exit_code}"
            source = " (reported)" if step.ended is not None and step.ended.from_report else ""
            forced = f", killed for {step.forced.phase}" if step.forced else ""
            adopted = ", adopted" if step.adopted else ""
            return f"finish: {how}{source}{forced}{adopted}"
        case End(phase=phase, reason=reason):
            return f"end {phase} ({reason})"
        case Retry(reason=reason):
            return f"retry ({reason})"
        case RemoveContainer():
            return "remove its container"
        case Reset(to=to):
            return "kill for a reset" if step.running else f"reset to {to}"
    return f"unexpected {step.decision}"


# --- round one: each task in flight against its container ---------------------------------

STARTED = memory(started_here={name()})
KILLED_LATE = memory(
    started_here={name()}, stopping={name(): Stop(Phase.TIMED_OUT, Reason.DEADLINE_EXCEEDED)}
)
DONE = Report(exit_code=0)
CRASHED = Report(error="the supervisor failed")

IN_FLIGHT = [
    # (id, tasks, containers, observed extras, memory, expected)
    ("pending waits", [task(phase=Phase.PENDING)], [], {}, STARTED, []),
    (
        "pending cancelled ends",
        [task(phase=Phase.PENDING, cancel_requested_at=ago(1))],
        [],
        {},
        STARTED,
        ["end Cancelled (Cancelled)"],
    ),
    ("scheduled starts", [task(phase=Phase.SCHEDULED)], [], {}, STARTED, ["start"]),
    (
        "scheduled with an unstarted container replaces it",
        [task(phase=Phase.SCHEDULED)],
        [container("created")],
        {},
        STARTED,
        ["start, replacing the unstarted"],
    ),
    (
        "scheduled whose container runs is marked running",
        [task(phase=Phase.SCHEDULED)],
        [container("running")],
        {},
        STARTED,
        ["follow t", "mark running"],
    ),
    (
        "scheduled and cancelled with a running container is killed",
        [task(phase=Phase.SCHEDULED, cancel_requested_at=ago(1))],
        [container("running")],
        {},
        STARTED,
        ["follow t", "kill for Cancelled"],
    ),
    ("running is followed", [task()], [container("running")], {}, STARTED, ["follow t"]),
    (
        "running past its deadline is killed",
        [task(deadline_at=ago(1))],
        [container("running")],
        {},
        STARTED,
        ["follow t", "kill for TimedOut"],
    ),
    (
        "running whose supervisor reported finishes at once",
        [task()],
        [container("running")],
        {"reports": {name(): DONE}},
        STARTED,
        ["follow t", "finish: exit 0 (reported)"],
    ),
    (
        "a supervisor's error report finishes with the supervisor's exit code",
        [task()],
        [container("running")],
        {"reports": {name(): CRASHED}},
        STARTED,
        ["follow t", "finish: exit 3 (reported)"],
    ),
    (
        "listed without its exit record, a reported container finishes",
        [task()],
        [container("exited", exit_code=None)],
        {"reports": {name(): DONE}},
        STARTED,
        ["finish: exit 0 (reported)"],
    ),
    (
        "an exit record beats the report",
        [task()],
        [container("exited", exit_code=1)],
        {"reports": {name(): DONE}},
        STARTED,
        ["finish: exit 1"],
    ),
    (
        "exited finishes on the engine's record",
        [task()],
        [container("exited", exit_code=1)],
        {},
        STARTED,
        ["finish: exit 1"],
    ),
    (
        "exited and started by an earlier controller is adopted",
        [task()],
        [container("exited")],
        {},
        memory(),
        ["finish: exit 0, adopted"],
    ),
    (
        "lost once is retried",
        [task()],
        [],
        {},
        STARTED,
        ["retry (ContainerLost)"],
    ),
    (
        "lost twice fails",
        [task()],
        [],
        {"lost": {"t": 1}},
        STARTED,
        ["end Failed (ContainerLost)"],
    ),
    (
        "killed and gone ends as it was killed for",
        [task()],
        [],
        {},
        KILLED_LATE,
        ["finish: gone, killed for TimedOut"],
    ),
    (
        "killed and exited ends as it was killed for",
        [task()],
        [container("exited", exit_code=137)],
        {},
        KILLED_LATE,
        ["finish: exit 137, killed for TimedOut"],
    ),
    (
        "terminal has its container removed",
        [task(phase=Phase.SUCCEEDED)],
        [container("exited")],
        {},
        STARTED,
        ["remove its container"],
    ),
    (
        "a reset of a stopped container resets",
        [task(phase=Phase.FAILED, reset_requested_to=Phase.PENDING)],
        [container("exited")],
        {},
        STARTED,
        ["reset to Pending"],
    ),
    (
        "a reset of a running container kills it first",
        [task(reset_requested_to=Phase.FAILED)],
        [container("running")],
        {},
        STARTED,
        ["follow t", "kill for a reset"],
    ),
    (
        "a reset of a reported container needs no kill",
        [task(reset_requested_to=Phase.FAILED)],
        [container("running")],
        {"reports": {name(): DONE}},
        STARTED,
        ["follow t", "reset to Failed"],
    ),
    (
        "without an engine, tasks in flight wait",
        [task(), task("s", Phase.SCHEDULED)],
        None,
        {},
        STARTED,
        [],
    ),
    (
        "without an engine, a cancelled pending task still ends",
        [task(phase=Phase.PENDING, cancel_requested_at=ago(1))],
        None,
        {},
        STARTED,
        ["end Cancelled (Cancelled)"],
    ),
    (
        "a container of no active task is an orphan",
        [],
        [container("exited", task_id="old")],
        {},
        STARTED,
        [f"remove orphan {name('old')}"],
    ),
    (
        "a container of an earlier attempt is an orphan",
        [task(attempt=2)],
        [container("running", attempt=1), container("running", attempt=2)],
        {},
        STARTED,
        ["follow t", f"remove orphan {name('t', 1)}"],
    ),
    (
        "a container of a later attempt is left alone",
        [task(phase=Phase.PENDING, attempt=1)],
        [container("running", attempt=2)],
        {},
        STARTED,
        [],
    ),
    (
        "a container being removed is no orphan",
        [],
        [container("exited", task_id="old")],
        {"removing": [name("old")]},
        STARTED,
        [],
    ),
]


@pytest.mark.parametrize(
    ("tasks", "containers", "extras", "remembered", "expected"),
    [pytest.param(*row[1:], id=row[0]) for row in IN_FLIGHT],
)
def test_plan_tasks(
    tasks: list[TaskRecord],
    containers: list[ObservedContainer] | None,
    extras: dict[str, Any],
    remembered: PassMemory,
    expected: list[str],
) -> None:
    seen = world(tasks, containers, **extras)
    assert said(plan_tasks(seen, remembered)) == expected


def test_a_reported_exit_keeps_the_task_start_and_ends_at_the_pass() -> None:
    seen = world([task()], [container("running")], reports={name(): DONE})
    step = plan_tasks(seen, STARTED)[-1]
    assert isinstance(step, Converge) and step.ended is not None
    assert (step.ended.started_at, step.ended.finished_at) == (ago(4), NOW)


# --- forgetting what is over ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("tasks", "containers", "kept"),
    [
        pytest.param([task()], [container("running")], True, id="all-kept-while-running"),
        pytest.param(
            [task(phase=Phase.SUCCEEDED)], [container("exited")], False, id="ended-forgotten"
        ),
        pytest.param([task()], None, True, id="engine-unreachable-keeps-all"),
    ],
)
def test_forget_past(
    tasks: list[TaskRecord], containers: list[ObservedContainer] | None, kept: bool
) -> None:
    holding = Holding("t", (0,), (), 64 * MIB, 100 * MIB, 0.0)
    remembered = memory(
        stopping={name(): Stop(Phase.TIMED_OUT, Reason.DEADLINE_EXCEEDED)},
        started_here={name()},
        draining={name(): holding},
    )
    forget_past(remembered, world(tasks, containers))
    assert bool(remembered.stopping) == kept
    assert bool(remembered.draining) == kept
    assert remembered.started_here == {name()}  # still listed: the engine holds it


# --- round two: stdin and the queue --------------------------------------------------------

QUEUE = [
    # (id, tasks, memory, engine ok, expected)
    (
        "two one-core tasks take both cores",
        [task("a", Phase.PENDING), task("b", Phase.PENDING)],
        memory(),
        True,
        ["bind a to cores [0]", "bind b to cores [1]"],
    ),
    (
        "a running task's core is not given twice",
        [task("r"), task("a", Phase.PENDING), task("b", Phase.PENDING)],
        memory(),
        True,
        ["bind a to cores [1]", "note Unschedulable for b"],
    ),
    (
        "a draining container keeps its core",
        [task("a", Phase.PENDING)],
        memory(
            draining={
                "x": Holding("x", (0,), (), 64 * MIB, 0, 0.0),
                "y": Holding("y", (1,), (), 64 * MIB, 0, 0.0),
            }
        ),
        True,
        ["note Unschedulable for a"],
    ),
    (
        "more than the host has never fits",
        [task("big", Phase.PENDING, cpu=4)],
        memory(),
        True,
        ["fail big: never fits"],
    ),
    (
        "cancelled and reset tasks are not placed",
        [
            task("c", Phase.PENDING, cancel_requested_at=ago(1)),
            task("r", Phase.PENDING, reset_requested_to=Phase.FAILED),
        ],
        memory(),
        True,
        [],
    ),
    (
        "a runtime whose image is missing waits, and holds no place in the queue",
        [task("n", Phase.PENDING, runtime="node", cpu=2), task("a", Phase.PENDING)],
        memory(),
        True,
        ["bind a to cores [0]", "note RuntimeUnavailable for n"],
    ),
    (
        "an installed runtime other than python is placed",
        [task("b", Phase.PENDING, runtime="bash")],
        memory(),
        True,
        ["bind b to cores [0]"],
    ),
    (
        "without an engine the queue says so",
        [task("a", Phase.PENDING)],
        memory(),
        False,
        ["note RuntimeUnavailable for a"],
    ),
    (
        "words that did not change are not written again",
        [task("a", Phase.PENDING, reason="RuntimeUnavailable", message="engine unreachable")],
        memory(),
        False,
        [],
    ),
]


@pytest.mark.parametrize(
    ("tasks", "remembered", "engine_ok", "expected"),
    [pytest.param(*row[1:], id=row[0]) for row in QUEUE],
)
def test_plan_queue(
    tasks: list[TaskRecord], remembered: PassMemory, engine_ok: bool, expected: list[str]
) -> None:
    seen = world(tasks, engine_ok=engine_ok)
    assert said(plan_queue(seen, remembered, before=seen)) == expected


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        pytest.param(
            [task(interactive=True)], [task(interactive=True)], ["forward input to t"], id="running"
        ),
        pytest.param(
            [task(phase=Phase.SCHEDULED, interactive=True)],
            [task(interactive=True)],
            ["forward input to t"],
            id="started-this-pass",
        ),
        pytest.param(
            [task(interactive=True)],
            [],
            ["forward input to t"],
            id="ended-this-pass-its-input-dropped",
        ),
        pytest.param([task()], [task()], [], id="not-interactive"),
        pytest.param(
            [task(phase=Phase.SCHEDULED, interactive=True)],
            [task(phase=Phase.SCHEDULED, interactive=True)],
            [],
            id="not-started",
        ),
    ],
)
def test_input_goes_to_interactive_tasks_running_in_the_pass(
    before: list[TaskRecord], after: list[TaskRecord], expected: list[str]
) -> None:
    effects = plan_queue(world(after), memory(), before=world(before))
    assert [line for line in said(effects) if line.startswith("forward")] == expected


def test_input_waits_while_the_engine_cannot_be_asked() -> None:
    running = [task(interactive=True)]
    effects = plan_queue(world(running), memory(), before=world(running, None))
    assert not [e for e in effects if isinstance(e, ForwardInput)]


# --- round three: upkeep, capacity, the next deadline ----------------------------------------

UPKEEP = [
    # (id, tasks, memory, engine ok, expected)
    (
        "an idle host keeps the pool full, of the default size",
        [],
        memory(compacted_at=NOW),
        True,
        ["keep warm 2 of 512MB"],
    ),
    (
        "waiting sizes come first",
        [task("a", Phase.PENDING, storage_bytes=200 * MIB)],
        memory(compacted_at=NOW),
        True,
        ["keep warm 1 of 200MB, 1 of 512MB"],
    ),
    (
        "without an engine, no pool",
        [],
        memory(compacted_at=NOW),
        False,
        [],
    ),
    (
        "compaction once a minute",
        [],
        memory(compacted_at=NOW - timedelta(seconds=60)),
        True,
        ["keep warm 2 of 512MB", "compact"],
    ),
    (
        "a start that never came is stuck",
        [task("s", Phase.SCHEDULED, scheduled_at=LONG_AGO)],
        memory(compacted_at=NOW),
        True,
        ["keep warm 2 of 512MB", "stuck: s=yes"],
    ),
    (
        "moving again clears it",
        [task("r", stuck_reason="was stuck")],
        memory(compacted_at=NOW),
        True,
        ["keep warm 2 of 512MB", "stuck: r=no"],
    ),
]


@pytest.mark.parametrize(
    ("tasks", "remembered", "engine_ok", "expected"),
    [pytest.param(*row[1:], id=row[0]) for row in UPKEEP],
)
def test_plan_upkeep(
    tasks: list[TaskRecord], remembered: PassMemory, engine_ok: bool, expected: list[str]
) -> None:
    seen = world(tasks, [container("running", t.id) for t in tasks if t.phase == Phase.RUNNING])
    seen = replace(seen, health=RuntimeHealth(ok=engine_ok, message="m", runtimes=INSTALLED))
    assert said(plan_upkeep(seen, remembered, SETTINGS, at=NOW)) == expected


def test_a_stuck_record_already_written_is_not_written_again() -> None:
    scheduled = task("s", Phase.SCHEDULED, scheduled_at=LONG_AGO)
    first = plan_upkeep(world([scheduled]), memory(compacted_at=NOW), SETTINGS, at=NOW)
    (record,) = [e for e in first if isinstance(e, RecordStuck)]
    ((_, why),) = record.changes
    again = world([replace(scheduled, stuck_reason=why)])
    assert not [
        e
        for e in plan_upkeep(again, memory(compacted_at=NOW), SETTINGS, at=NOW)
        if isinstance(e, RecordStuck)
    ]


@pytest.mark.parametrize(
    ("written_at", "same_fields", "expected"),
    [
        pytest.param(None, False, ["write capacity"], id="first-pass-writes"),
        pytest.param(NOW - timedelta(seconds=1), True, [], id="nothing-changed-nothing-written"),
        pytest.param(NOW - timedelta(seconds=3), True, ["write capacity"], id="heartbeat-due"),
        pytest.param(
            NOW - timedelta(seconds=1), False, ["write capacity"], id="allocation-changed"
        ),
    ],
)
def test_plan_capacity(written_at: datetime | None, same_fields: bool, expected: list[str]) -> None:
    seen = world([task()], [container("running")])
    (first,) = plan_capacity(seen, memory(), SETTINGS)
    assert isinstance(first, WriteCapacity) and first.fields["allocated_cpus"] == [0]
    written = dict(first.fields) if same_fields else {**first.fields, "allocated_cpus": []}
    remembered = memory(capacity_written=written, heartbeat_at=written_at)
    assert said(plan_capacity(seen, remembered, SETTINGS)) == expected


def test_the_next_deadline_is_not_of_a_task_being_killed() -> None:
    soon, later = (
        task("a", deadline_at=NOW + timedelta(seconds=5)),
        task("b", deadline_at=NOW + timedelta(seconds=9)),
    )
    seen = world([soon, later])
    assert next_deadline(seen, memory()) == soon.deadline_at
    killing = memory(stopping={name("a"): Stop(Phase.TIMED_OUT, Reason.DEADLINE_EXCEEDED)})
    assert next_deadline(seen, killing) == later.deadline_at
