"""Pure reconcile decisions: what to do about one task, given what the engine shows.

`decide(task, container, now)` compares the desired state (phase, cancellation request,
deadline) with the observed container of the task's current attempt and returns one action;
`judge(...)` turns how the container's code ended (`Exit`) and its output into the task's
terminal status (or, where its code never reached it, into a requeue). Neither touches the
database, the engine or the clock: `controller.plan` calls `decide`, and `controller.act`
calls `judge` once it has the output.
"""

import signal
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from controller.runtime import CapturedOutput, ObservedContainer
from models.phases import Phase, Reason
from models.quantities import format_size
from sandbox.supervisor import Report

RESULT_TAIL_CHARS = 4000
SIGKILL_EXIT_CODE = 128 + 9  # what an init process reports for a child killed by SIGKILL
# What the supervisor exits with after reporting an error instead of the code's exit status
# (sandbox/supervisor.py): the exit code the engine then shows.
SUPERVISOR_ERROR_EXIT_CODE = 3


@dataclass(frozen=True)
class TaskView:
    """The fields of a task that decisions read."""

    id: str
    phase: Phase
    attempt: int
    timeout_seconds: int
    ram_bytes: int
    cancel_requested_at: datetime | None = None
    deadline_at: datetime | None = None
    reset_to: Phase | None = None
    created_at: datetime | None = None
    scheduled_at: datetime | None = None
    # How many times an attempt of this task has lost its container (from its transitions);
    # read only for a Running task whose container is gone.
    containers_lost: int = 0
    # The controller has sent its container SIGKILL to end it with this outcome (a kill does
    # not wait for the container to stop).
    stopping: "Stop | None" = None


class ExitRecord(Protocol):
    """How a container's run ended, as `judge` reads it: an `ObservedContainer` that has
    exited, or an `Exit`."""

    @property
    def exit_code(self) -> int | None: ...
    @property
    def oom_killed(self) -> bool: ...
    @property
    def started_at(self) -> datetime | None: ...
    @property
    def finished_at(self) -> datetime | None: ...
    @property
    def sandboxed(self) -> bool: ...


@dataclass(frozen=True)
class Exit:
    """How an attempt's code ended: from the engine's exit record, or sooner, from the
    supervisor's report while the engine still shows the container running (`from_report`)."""

    exit_code: int | None
    started_at: datetime | None
    finished_at: datetime | None
    oom_killed: bool = False
    sandboxed: bool = False
    # Read from the report: the container may still be exiting, and holds its slots until the
    # engine shows it stopped.
    from_report: bool = False

    @classmethod
    def from_engine(cls, container: ObservedContainer, task_started_at: datetime | None) -> "Exit":
        """The engine's exit record. Where the engine shows no start time (a warm container's
        predates its task), the task's own counts."""
        return cls(
            exit_code=container.exit_code,
            started_at=container.started_at or task_started_at,
            finished_at=container.finished_at,
            oom_killed=container.oom_killed,
            sandboxed=container.sandboxed,
        )


@dataclass(frozen=True)
class Noop:
    pass


@dataclass(frozen=True)
class Start:
    """Create and start the attempt's container (none exists, or one that never started)."""

    replace_unstarted: bool = False


@dataclass(frozen=True)
class MarkRunning:
    started_at: datetime | None


@dataclass(frozen=True)
class Stop:
    """Kill the container, then end the task with this outcome whatever its exit code."""

    phase: Phase
    reason: Reason


@dataclass(frozen=True)
class Finish:
    """The container has exited: judge its outcome and record it."""


@dataclass(frozen=True)
class End:
    """End the task without a container to look at."""

    phase: Phase
    reason: Reason
    message: str


@dataclass(frozen=True)
class Retry:
    """Requeue the task as its next attempt (to Pending), for this reason."""

    reason: Reason
    message: str


@dataclass(frozen=True)
class RemoveContainer:
    pass


@dataclass(frozen=True)
class Reset:
    """An admin asked to requeue (to Pending) or fail the task: stop its container first."""

    to: Phase


Action = Noop | Start | MarkRunning | Stop | Finish | End | Retry | RemoveContainer | Reset


def decide(
    task: TaskView, container: ObservedContainer | None, now: datetime, *, reported: bool = False
) -> Action:
    """The one next step that moves `task` toward its desired state. `reported`: the
    container's supervisor has reported how its code ended, though the engine may still show
    the container running."""
    if task.reset_to is not None:
        return Reset(task.reset_to)
    if task.phase.is_terminal:
        return RemoveContainer() if container is not None else Noop()
    cancelled = task.cancel_requested_at is not None
    if task.phase == Phase.PENDING:
        if cancelled:
            return End(Phase.CANCELLED, Reason.CANCELLED, "cancelled before it started")
        return Noop()
    if container is not None and (container.has_exited or reported):
        return Finish()
    if container is None and task.stopping is not None:
        return Finish()  # killed, then gone: it ends as it was killed for, with no exit record
    if task.phase == Phase.SCHEDULED:
        if container is None or container.never_started:
            if cancelled:
                return End(Phase.CANCELLED, Reason.CANCELLED, "cancelled before it started")
            return Start(replace_unstarted=container is not None)
        if cancelled:
            return Stop(Phase.CANCELLED, Reason.CANCELLED)
        return MarkRunning(container.started_at)
    # Running
    if container is None and cancelled:
        return End(Phase.CANCELLED, Reason.CANCELLED, "cancelled; its container was already gone")
    if container is None:
        return _lost(task)
    if cancelled:
        return Stop(Phase.CANCELLED, Reason.CANCELLED)
    if task.deadline_at is not None and now >= task.deadline_at:
        return Stop(Phase.TIMED_OUT, Reason.DEADLINE_EXCEEDED)
    return Noop()


def _lost(task: TaskView) -> Action:
    """A Running task's container is gone (removed behind our back, or the engine lost it).

    Its code may have run in part, so the new attempt runs it again: once, as Kubernetes' Job
    retries a pod that disappeared. A second loss is no accident; the task fails.
    """
    if task.containers_lost == 0:
        return Retry(
            Reason.CONTAINER_LOST,
            f"its container disappeared from the engine while it ran; retried once, as "
            f"attempt {task.attempt + 1}",
        )
    return End(
        Phase.FAILED,
        Reason.CONTAINER_LOST,
        f"its container disappeared from the engine while it ran, for the second time "
        f"(attempt {task.attempt}); not retried again",
    )


@dataclass(frozen=True)
class StuckLimits:
    grace_seconds: float
    pending_seconds: float


def stuck_reason(
    task: TaskView,
    container: ObservedContainer | None,
    now: datetime,
    *,
    engine_ok: bool,
    limits: StuckLimits,
) -> str | None:
    """Why `task` makes no progress, or None while it does. The words stay the same while
    the condition lasts, so the record is written once, with the time it began."""
    if task.phase.is_terminal or task.reset_to is not None:
        return None
    if not engine_ok:
        if task.phase == Phase.PENDING:
            waited = (now - task.created_at).total_seconds() if task.created_at else 0.0
            if waited < limits.pending_seconds:
                return None
            return "pending while the container engine is unavailable"
        return "the container engine is unavailable, so its container cannot be observed"
    if task.phase == Phase.SCHEDULED and task.scheduled_at is not None:
        waited = (now - task.scheduled_at).total_seconds()
        if waited >= limits.grace_seconds and (container is None or container.never_started):
            return (
                f"scheduled more than {limits.grace_seconds:.0f} s ago, "
                "but its container has not started"
            )
    if task.phase == Phase.RUNNING and task.deadline_at is not None:
        overdue = (now - task.deadline_at).total_seconds()
        if overdue >= limits.grace_seconds:
            return (
                f"still running more than {limits.grace_seconds:.0f} s past its deadline: "
                "its container could not be stopped"
            )
    return None


@dataclass(frozen=True)
class Outcome:
    phase: Phase
    reason: Reason
    message: str
    result: str
    exit_code: int | None
    stdout: str
    stderr: str
    stdout_truncated: bool
    stderr_truncated: bool


def _tail(text: str) -> str:
    text = text.rstrip("\n")
    return text if len(text) <= RESULT_TAIL_CHARS else "…" + text[-RESULT_TAIL_CHARS:]


def judge(
    task: TaskView,
    ended: ExitRecord | None,
    output: CapturedOutput,
    *,
    limit: int,
    forced: Stop | None = None,
    adopted: bool = False,
) -> Outcome:
    """The terminal status of a task whose code has ended (`ended`: how; None for a container
    killed and gone); phase Pending where the task is to run again as a new attempt.

    `adopted`: the container was started by an earlier controller process, not this one.
    """
    report = output.report
    stdout_truncated = len(output.stdout) > limit or bool(report and report.stdout_truncated)
    stderr_truncated = len(output.stderr) > limit or bool(report and report.stderr_truncated)
    stdout = output.stdout[:limit].decode("utf-8", errors="replace")
    stderr = output.stderr[:limit].decode("utf-8", errors="replace")
    verdict = (
        _stop_verdict(task, ended, forced)
        or _start_failure(task, report, adopted=adopted)
        or _exit_verdict(
            task, ended, report, stdout, stderr, cut_at=limit if stdout_truncated else None
        )
    )
    return Outcome(
        verdict.phase,
        verdict.reason,
        verdict.message,
        verdict.result,
        ended.exit_code if ended is not None else None,
        stdout,
        stderr,
        stdout_truncated,
        stderr_truncated,
    )


@dataclass(frozen=True)
class _Verdict:
    phase: Phase
    reason: Reason
    message: str
    result: str


def _failure(reason: Reason, message: str) -> _Verdict:
    return _Verdict(Phase.FAILED, reason, message, message)


def _stop_verdict(task: TaskView, ended: ExitRecord | None, forced: Stop | None) -> _Verdict | None:
    """Cancelled or timed out: by the kill sent for it, or as the times say."""
    finished = ended.finished_at if ended is not None else None
    cancelled_first = task.cancel_requested_at is not None and (
        finished is None or finished >= task.cancel_requested_at
    )
    if (forced is not None and forced.phase == Phase.CANCELLED) or (
        forced is None and cancelled_first
    ):
        return _Verdict(Phase.CANCELLED, Reason.CANCELLED, "cancelled on request", "cancelled")
    timed_out = forced is not None and forced.phase == Phase.TIMED_OUT
    if forced is None and ended is not None and ended.started_at and finished:
        # Both times are the engine's, so a skew between its clock and ours does not count.
        ran_for = (finished - ended.started_at).total_seconds()
        timed_out = ran_for >= task.timeout_seconds
    if timed_out:
        message = f"exceeded its {task.timeout_seconds} s timeout and was killed"
        return _Verdict(Phase.TIMED_OUT, Reason.DEADLINE_EXCEEDED, message, message)
    return None


def _start_failure(task: TaskView, report: Report | None, *, adopted: bool) -> _Verdict | None:
    """The supervisor reports that the code could not start."""
    if report is None or report.error is None:
        return None
    if report.undelivered and adopted:
        # The controller that started it died before handing over the code (a window of the
        # engine's start call): the code never ran, so it runs now, as a new attempt. Only a
        # crash leads here, so this cannot repeat forever on its own. Pending: the caller
        # requeues the task rather than ending it.
        message = (
            f"its code never reached the container: the controller that started it "
            f"stopped first, so it never ran; started again as attempt {task.attempt + 1}"
        )
        return _Verdict(Phase.PENDING, Reason.START_FAILED, message, message)
    return _failure(Reason.START_FAILED, report.error)


def _exit_verdict(
    task: TaskView,
    ended: ExitRecord | None,
    report: Report | None,
    stdout: str,
    stderr: str,
    *,
    cut_at: int | None,
) -> _Verdict:
    """The code ran to its end: by its exit code, its signal, or what killed it."""
    exit_code = ended.exit_code if ended is not None else None
    if exit_code == 0:
        message = "exited with code 0"
        if cut_at is not None:
            message += f"; stdout was cut at {format_size(cut_at)}"
        return _Verdict(Phase.SUCCEEDED, Reason.COMPLETED, message, stdout)
    limit = format_size(task.ram_bytes)
    if report is None and ended is not None and ended.sandboxed:
        # gVisor: the sandbox died as a whole, the supervisor with it, so the exit code is the
        # sandbox's and the code's own exit status is unknown.
        if ended.oom_killed:
            return _failure(
                Reason.OOM_KILLED,
                f"killed: out of memory (limit {limit}); under gVisor that ends the whole "
                "sandbox, whichever process used the memory",
            )
        return _failure(
            Reason.SANDBOX_DIED,
            f"the gVisor sandbox died as a whole (exit code {exit_code}), so the code's own "
            "exit status is unknown: under gVisor a fork bomb past the process limit, a "
            "SIGKILL to PID 1 or `docker kill` ends the whole sandbox",
        )
    if (ended is not None and ended.oom_killed) or (report is not None and report.oom_killed):
        return _failure(Reason.OOM_KILLED, f"killed: out of memory (limit {limit})")
    if exit_code == SIGKILL_EXIT_CODE and report is None:
        # SIGKILL ended the container, yet not by our deadline (that is a Stop, or ran_for
        # in `_stop_verdict`) nor for memory: someone outside did it, such as `docker kill`. A
        # deliberate kill ends the task; unlike a vanished container, it is not retried.
        return _failure(
            Reason.NON_ZERO_EXIT,
            "killed by SIGKILL from outside the task (exit code 137), not by its timeout nor "
            "for memory: for instance `docker kill`",
        )
    message = f"exited with code {exit_code}"
    if report is not None and report.signal:
        message = f"killed by signal {_signal_name(report.signal)} (exit code {exit_code})"
    return _Verdict(Phase.FAILED, Reason.NON_ZERO_EXIT, message, _tail(stderr) or message)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)
