"""Truth tables for the pure reconcile decisions: `decide` (the next step for one task) and
`judge` (the terminal status of a stopped container), and the supervisor report they read.
"""

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from controller.reconcile import (
    RESULT_TAIL_CHARS,
    Action,
    End,
    Finish,
    MarkRunning,
    Noop,
    RemoveContainer,
    Reset,
    Retry,
    Start,
    Stop,
    TaskView,
    decide,
    judge,
)
from controller.runtime import CapturedOutput, ObservedContainer
from models.phases import Phase, Reason
from sandbox.supervisor import ERROR_MAX_CHARS, SOURCE, Report, read_report

MIB = 1024 * 1024
NOW = datetime(2026, 11, 27, 22, 0, 0, tzinfo=UTC)
STARTED = NOW - timedelta(seconds=5)


def seconds(n: float) -> timedelta:
    return timedelta(seconds=n)


def task(
    phase: Phase = Phase.RUNNING,
    *,
    cancel: datetime | None = None,
    deadline: datetime | None = None,
    timeout: int = 30,
    ram: int = 64 * MIB,
    reset_to: Phase | None = None,
) -> TaskView:
    return TaskView(
        id="t1",
        phase=phase,
        attempt=1,
        timeout_seconds=timeout,
        ram_bytes=ram,
        cancel_requested_at=cancel,
        deadline_at=deadline,
        reset_to=reset_to,
    )


def container(
    state: str,
    *,
    exit_code: int | None = None,
    oom_killed: bool = False,
    started_at: datetime | None = None,
    finished_at: datetime | None = None,
) -> ObservedContainer:
    return ObservedContainer(
        name="taskyard-test-t1-1",
        task_id="t1",
        attempt=1,
        state=state,
        exit_code=exit_code,
        oom_killed=oom_killed,
        started_at=started_at,
        finished_at=finished_at,
    )


CONTAINERS: dict[str, ObservedContainer | None] = {
    "none": None,
    "created": container("created"),
    "running": container("running", started_at=STARTED),
    "exited": container("exited", exit_code=0, started_at=STARTED, finished_at=NOW - seconds(1)),
}

CANCELLED_BEFORE_START = End(Phase.CANCELLED, Reason.CANCELLED, "cancelled before it started")
# The user asked to stop it and it is stopped: that is a cancellation, not a lost container.
CANCELLED_WITHOUT_CONTAINER = End(
    Phase.CANCELLED, Reason.CANCELLED, "cancelled; its container was already gone"
)
# A vanished container is retried once (see test_a_second_lost_container_fails_the_task).
CONTAINER_LOST = Retry(
    Reason.CONTAINER_LOST,
    "its container disappeared from the engine while it ran; retried once, as attempt 2",
)
STOP_CANCELLED = Stop(Phase.CANCELLED, Reason.CANCELLED)
STOP_TIMED_OUT = Stop(Phase.TIMED_OUT, Reason.DEADLINE_EXCEEDED)

# phase, container, cancel requested, deadline passed -> action
DECISIONS: list[tuple[Phase, str, bool, bool, Action]] = [
    (Phase.PENDING, "none", False, False, Noop()),
    (Phase.PENDING, "none", False, True, Noop()),
    (Phase.PENDING, "none", True, False, CANCELLED_BEFORE_START),
    (Phase.PENDING, "none", True, True, CANCELLED_BEFORE_START),
    (Phase.SCHEDULED, "none", False, False, Start(replace_unstarted=False)),
    (Phase.SCHEDULED, "none", False, True, Start(replace_unstarted=False)),
    (Phase.SCHEDULED, "none", True, False, CANCELLED_BEFORE_START),
    (Phase.SCHEDULED, "none", True, True, CANCELLED_BEFORE_START),
    (Phase.SCHEDULED, "created", False, False, Start(replace_unstarted=True)),
    (Phase.SCHEDULED, "created", False, True, Start(replace_unstarted=True)),
    (Phase.SCHEDULED, "created", True, False, CANCELLED_BEFORE_START),
    (Phase.SCHEDULED, "created", True, True, CANCELLED_BEFORE_START),
    (Phase.SCHEDULED, "running", False, False, MarkRunning(STARTED)),
    (Phase.SCHEDULED, "running", False, True, MarkRunning(STARTED)),
    (Phase.SCHEDULED, "running", True, False, STOP_CANCELLED),
    (Phase.SCHEDULED, "running", True, True, STOP_CANCELLED),
    (Phase.SCHEDULED, "exited", False, False, Finish()),
    (Phase.SCHEDULED, "exited", False, True, Finish()),
    (Phase.SCHEDULED, "exited", True, False, Finish()),
    (Phase.SCHEDULED, "exited", True, True, Finish()),
    (Phase.RUNNING, "none", False, False, CONTAINER_LOST),
    (Phase.RUNNING, "none", False, True, CONTAINER_LOST),
    (Phase.RUNNING, "none", True, False, CANCELLED_WITHOUT_CONTAINER),
    (Phase.RUNNING, "none", True, True, CANCELLED_WITHOUT_CONTAINER),
    (Phase.RUNNING, "created", False, False, Noop()),
    (Phase.RUNNING, "created", False, True, STOP_TIMED_OUT),
    (Phase.RUNNING, "created", True, False, STOP_CANCELLED),
    (Phase.RUNNING, "created", True, True, STOP_CANCELLED),
    (Phase.RUNNING, "running", False, False, Noop()),
    (Phase.RUNNING, "running", False, True, STOP_TIMED_OUT),
    (Phase.RUNNING, "running", True, False, STOP_CANCELLED),
    (Phase.RUNNING, "running", True, True, STOP_CANCELLED),
    (Phase.RUNNING, "exited", False, False, Finish()),
    (Phase.RUNNING, "exited", False, True, Finish()),
    (Phase.RUNNING, "exited", True, False, Finish()),
    (Phase.RUNNING, "exited", True, True, Finish()),
]


def decision_id(row: tuple[Phase, str, bool, bool, Action]) -> str:
    phase, state, cancel, late = row[:4]
    return "-".join(
        [phase.lower(), f"container-{state}"]
        + (["cancel"] if cancel else [])
        + (["past-deadline"] if late else [])
    )


@pytest.mark.parametrize(
    ("phase", "state", "cancel", "late", "expected"),
    [pytest.param(*row, id=decision_id(row)) for row in DECISIONS],
)
def test_decide(phase: Phase, state: str, cancel: bool, late: bool, expected: Action) -> None:
    view = task(
        phase,
        cancel=NOW - seconds(2) if cancel else None,
        deadline=NOW - seconds(1) if late else NOW + seconds(10),
    )
    assert decide(view, CONTAINERS[state], NOW) == expected


@pytest.mark.parametrize(
    "phase", [Phase.SUCCEEDED, Phase.FAILED, Phase.TIMED_OUT, Phase.CANCELLED], ids=str
)
@pytest.mark.parametrize("state", list(CONTAINERS))
@pytest.mark.parametrize("cancel", [False, True], ids=["", "cancel"])
def test_terminal_task_only_has_its_container_removed(
    phase: Phase, state: str, cancel: bool
) -> None:
    view = task(phase, cancel=NOW - seconds(2) if cancel else None, deadline=NOW - seconds(1))
    expected = Noop() if CONTAINERS[state] is None else RemoveContainer()
    assert decide(view, CONTAINERS[state], NOW) == expected


@pytest.mark.parametrize("late", [False, True], ids=["", "past-deadline"])
def test_a_second_lost_container_fails_the_task(late: bool) -> None:
    view = replace(
        task(Phase.RUNNING, deadline=NOW - seconds(1) if late else NOW + seconds(9)),
        attempt=2,
        containers_lost=1,
    )
    assert decide(view, None, NOW) == End(
        Phase.FAILED,
        Reason.CONTAINER_LOST,
        "its container disappeared from the engine while it ran, for the second time "
        "(attempt 2); not retried again",
    )


def test_a_second_lost_container_of_a_cancelled_task_is_a_cancellation() -> None:
    view = replace(task(Phase.RUNNING, cancel=NOW - seconds(2)), containers_lost=1)
    assert decide(view, None, NOW) == CANCELLED_WITHOUT_CONTAINER


@pytest.mark.parametrize("state", ["created", "running", "exited"])
def test_earlier_losses_do_not_matter_while_the_container_is_there(state: str) -> None:
    first = task(Phase.RUNNING, deadline=NOW + seconds(9))
    again = replace(first, attempt=2, containers_lost=1)
    assert decide(again, CONTAINERS[state], NOW) == decide(first, CONTAINERS[state], NOW)


@pytest.mark.parametrize("phase", [Phase.SCHEDULED, Phase.RUNNING], ids=str)
@pytest.mark.parametrize("sent", [STOP_TIMED_OUT, STOP_CANCELLED], ids=["timeout", "cancel"])
def test_a_container_gone_after_its_kill_ends_the_task_as_killed(phase: Phase, sent: Stop) -> None:
    view = replace(task(phase, deadline=NOW - seconds(1)), stopping=sent)
    assert decide(view, None, NOW) == Finish()  # not lost: the kill ends it


@pytest.mark.parametrize("state", ["running", "exited"])
def test_a_kill_already_sent_changes_nothing_while_the_container_is_there(state: str) -> None:
    view = task(Phase.RUNNING, deadline=NOW - seconds(1))
    sent = replace(view, stopping=STOP_TIMED_OUT)
    assert decide(sent, CONTAINERS[state], NOW) == decide(view, CONTAINERS[state], NOW)


def test_deadline_reached_exactly_now_stops_the_task() -> None:
    view = task(Phase.RUNNING, deadline=NOW)
    assert decide(view, CONTAINERS["running"], NOW) == STOP_TIMED_OUT


def test_running_task_without_a_deadline_is_left_alone() -> None:
    assert decide(task(Phase.RUNNING, deadline=None), CONTAINERS["running"], NOW) == Noop()


@pytest.mark.parametrize("phase", list(Phase), ids=str)
@pytest.mark.parametrize("to", [Phase.PENDING, Phase.FAILED], ids=str)
def test_admin_reset_comes_before_everything_else(phase: Phase, to: Phase) -> None:
    view = task(phase, cancel=NOW - seconds(2), deadline=NOW - seconds(1), reset_to=to)
    assert decide(view, CONTAINERS["running"], NOW) == Reset(to)


# --- judge --------------------------------------------------------------------------------------

LIMIT = MIB


CODE_NOT_DELIVERED = "no code was delivered to the container"


def report(**fields: object) -> Report:
    """The supervisor's report line with these fields, as the controller reads it."""
    return read_report(json.dumps(fields).encode())


def reported(stdout: bytes = b"", stderr: bytes = b"", **fields: object) -> CapturedOutput:
    return CapturedOutput(stdout, stderr, report(**fields))


UNDELIVERED = {"error": CODE_NOT_DELIVERED, "undelivered": True}


def exited(exit_code: int, *, oom_killed: bool = False, ran_for: float = 1.0) -> ObservedContainer:
    return container(
        "exited",
        exit_code=exit_code,
        oom_killed=oom_killed,
        started_at=STARTED,
        finished_at=STARTED + seconds(ran_for),
    )


def output(stdout: bytes = b"", stderr: bytes = b"", *, exit_code: int = 0) -> CapturedOutput:
    """What the engine gives back from a container whose supervisor finished normally."""
    return reported(
        stdout,
        stderr,
        exit_code=exit_code,
        stdout_bytes=len(stdout),
        stderr_bytes=len(stderr),
        stdout_truncated=False,
        stderr_truncated=False,
    )


def running_task(**changes: object) -> TaskView:
    view = task(Phase.RUNNING, timeout=2, deadline=STARTED + seconds(2))
    return replace(view, **changes)


def test_exit_zero_succeeds_with_stdout_as_result() -> None:
    result = judge(running_task(), exited(0), output(b"Hello, World!\n"), limit=LIMIT)
    assert (result.phase, result.reason) == (Phase.SUCCEEDED, Reason.COMPLETED)
    assert result.result == "Hello, World!\n"
    assert result.stdout == "Hello, World!\n"
    assert result.stderr == ""
    assert result.exit_code == 0
    assert not result.stdout_truncated and not result.stderr_truncated


def test_non_zero_exit_fails_with_the_end_of_stderr() -> None:
    stderr = b'Traceback (most recent call last):\n  File "main.py"\nValueError: boom\n'
    result = judge(
        running_task(), exited(3), output(b"partial\n", stderr, exit_code=3), limit=LIMIT
    )
    assert (result.phase, result.reason) == (Phase.FAILED, Reason.NON_ZERO_EXIT)
    assert result.result.endswith("ValueError: boom")
    assert result.exit_code == 3
    assert result.stdout == "partial\n"
    assert result.stderr == stderr.decode()
    assert result.message == "exited with code 3"


def test_non_zero_exit_without_stderr_says_the_exit_code() -> None:
    result = judge(running_task(), exited(3), output(exit_code=3), limit=LIMIT)
    assert (result.phase, result.result) == (Phase.FAILED, "exited with code 3")


def test_long_stderr_result_keeps_only_its_end() -> None:
    stderr = b"x" * 10_000 + b"\nRuntimeError: the last line\n"
    result = judge(running_task(), exited(1), output(b"", stderr, exit_code=1), limit=LIMIT)
    assert result.result.endswith("RuntimeError: the last line")
    assert len(result.result) <= RESULT_TAIL_CHARS + 1
    assert result.stderr == stderr.decode()


def test_oom_kill_fails_with_the_memory_limit() -> None:
    view = running_task(ram_bytes=64 * MIB)
    result = judge(view, exited(137, oom_killed=True), CapturedOutput(b"", b""), limit=LIMIT)
    assert (result.phase, result.reason) == (Phase.FAILED, Reason.OOM_KILLED)
    assert "out of memory (limit 64MB)" in result.result
    assert result.exit_code == 137


@pytest.mark.parametrize(
    ("oom_kills", "want"),
    [
        (1, (Reason.OOM_KILLED, "killed: out of memory (limit 64MB)")),
        (0, (Reason.NON_ZERO_EXIT, "killed by signal SIGKILL (exit code 137)")),
    ],
    ids=["the-cgroup-counted-an-oom-kill", "no-oom-kill"],
)
def test_a_sigkilled_code_is_oom_killed_by_the_reports_count_where_the_engine_missed_it(
    oom_kills: int, want: tuple[Reason, str]
) -> None:
    # The engine's OOMKilled flag races with the exit (the OOM event may come after it).
    captured = reported(
        exit_code=137, signal=9, oom_kills=oom_kills, stdout_bytes=0, stderr_bytes=0
    )
    result = judge(
        running_task(ram_bytes=64 * MIB), exited(137, ran_for=0.5), captured, limit=LIMIT
    )
    assert (result.phase, result.reason) == (Phase.FAILED, want[0])
    assert result.message.startswith(want[1]), result.message


def test_sigkill_from_outside_fails_and_says_so() -> None:
    # `docker kill`: exit code 137 within the timeout, no OOM, and no supervisor report.
    result = judge(
        running_task(), exited(137, ran_for=0.5), CapturedOutput(b"up\n", b""), limit=LIMIT
    )
    assert (result.phase, result.reason, result.exit_code) == (
        Phase.FAILED,
        Reason.NON_ZERO_EXIT,
        137,
    )
    assert "killed by SIGKILL from outside the task" in result.result
    assert "docker kill" in result.message
    assert result.stdout == "up\n"


# Under gVisor a fork bomb, an OOM kill or a SIGKILL to PID 1 ends the whole sandbox, the
# supervisor with it: no report, and an exit code that is the sandbox's, not the code's.
SANDBOX_DIED = "the gVisor sandbox died as a whole"
WHOLE_SANDBOX_OOM = (
    "killed: out of memory (limit 64MB); under gVisor that ends the whole "
    "sandbox, whichever process used the memory"
)


@pytest.mark.parametrize(
    ("exit_code", "oom_killed", "ran_for", "with_report", "want"),
    [
        (2, False, 0.5, False, (Phase.FAILED, Reason.SANDBOX_DIED, SANDBOX_DIED)),
        (137, False, 0.5, False, (Phase.FAILED, Reason.SANDBOX_DIED, SANDBOX_DIED)),
        (137, True, 0.5, False, (Phase.FAILED, Reason.OOM_KILLED, WHOLE_SANDBOX_OOM)),
        (1, False, 0.5, True, (Phase.FAILED, Reason.NON_ZERO_EXIT, "bye")),
        (137, True, 0.5, True, (Phase.FAILED, Reason.OOM_KILLED, "killed: out of memory")),
        (0, True, 0.5, True, (Phase.SUCCEEDED, Reason.COMPLETED, "up\n")),
        (137, False, 2.5, False, (Phase.TIMED_OUT, Reason.DEADLINE_EXCEEDED, "exceeded its 2 s")),
    ],
    ids=[
        "fork-bomb-exit-2",
        "sigkill-to-pid-1",
        "oom-kill",
        "code-failed-itself",
        "code-oom-killed-itself-reported",
        "child-oom-code-succeeded",
        "past-its-deadline",
    ],
)
def test_a_gvisor_sandbox_that_dies_without_a_report_says_so(
    exit_code: int,
    oom_killed: bool,
    ran_for: float,
    with_report: bool,
    want: tuple[Phase, Reason, str],
) -> None:
    died = replace(exited(exit_code, oom_killed=oom_killed, ran_for=ran_for), sandboxed=True)
    captured = (
        output(b"up\n", b"bye\n", exit_code=exit_code)
        if with_report
        else CapturedOutput(b"up\n", b"")
    )
    result = judge(running_task(ram_bytes=64 * MIB), died, captured, limit=LIMIT)
    assert (result.phase, result.reason) == want[:2]
    assert result.result.startswith(want[2]), result.result
    assert result.exit_code == exit_code
    assert result.stdout == "up\n"  # what it wrote before it died is kept


def test_without_gvisor_a_missing_report_keeps_its_runc_meaning() -> None:
    # The same exit under runc: a SIGKILL from outside, not a sandbox that died.
    result = judge(running_task(), exited(2, ran_for=0.5), CapturedOutput(b"", b""), limit=LIMIT)
    assert (result.phase, result.reason, result.result) == (
        Phase.FAILED,
        Reason.NON_ZERO_EXIT,
        "exited with code 2",
    )


def test_code_exiting_with_137_itself_is_an_ordinary_non_zero_exit() -> None:
    # The supervisor reported it: the code's own exit status, not a kill from outside.
    result = judge(
        running_task(), exited(137, ran_for=0.5), output(b"", b"bye\n", exit_code=137), limit=LIMIT
    )
    assert (result.phase, result.reason, result.result) == (
        Phase.FAILED,
        Reason.NON_ZERO_EXIT,
        "bye",
    )
    assert result.message == "exited with code 137"


def test_oom_flag_with_exit_zero_is_a_success() -> None:
    result = judge(running_task(), exited(0, oom_killed=True), output(b"done\n"), limit=LIMIT)
    assert (result.phase, result.reason, result.result) == (
        Phase.SUCCEEDED,
        Reason.COMPLETED,
        "done\n",
    )


def test_container_that_ran_past_its_timeout_timed_out() -> None:
    result = judge(
        running_task(), exited(137, ran_for=2.5), CapturedOutput(b"tick\n", b""), limit=LIMIT
    )
    assert (result.phase, result.reason) == (Phase.TIMED_OUT, Reason.DEADLINE_EXCEEDED)
    assert "2 s timeout" in result.result
    assert result.stdout == "tick\n"


def test_container_that_exited_within_its_timeout_did_not_time_out() -> None:
    result = judge(running_task(), exited(0, ran_for=1.9), output(b"ok\n"), limit=LIMIT)
    assert result.phase == Phase.SUCCEEDED


def test_forced_timeout_stop_times_out_whatever_the_exit_code() -> None:
    result = judge(
        running_task(),
        exited(137, ran_for=0.5),
        CapturedOutput(b"", b""),
        limit=LIMIT,
        forced=STOP_TIMED_OUT,
    )
    assert (result.phase, result.reason) == (Phase.TIMED_OUT, Reason.DEADLINE_EXCEEDED)
    assert "2 s timeout" in result.result


def test_cancel_requested_before_the_container_finished_cancels() -> None:
    view = running_task(cancel_requested_at=STARTED + seconds(0.5))
    result = judge(view, exited(137), CapturedOutput(b"", b""), limit=LIMIT)
    assert (result.phase, result.reason, result.result) == (
        Phase.CANCELLED,
        Reason.CANCELLED,
        "cancelled",
    )


def test_forced_cancel_stop_cancels_even_with_exit_zero() -> None:
    view = running_task(cancel_requested_at=STARTED + seconds(0.5))
    result = judge(view, exited(0), output(b"done\n"), limit=LIMIT, forced=STOP_CANCELLED)
    assert (result.phase, result.reason) == (Phase.CANCELLED, Reason.CANCELLED)


def test_cancel_requested_after_the_container_finished_keeps_the_natural_outcome() -> None:
    view = running_task(cancel_requested_at=STARTED + seconds(1.5))
    result = judge(view, exited(0, ran_for=1.0), output(b"done\n"), limit=LIMIT)
    assert (result.phase, result.result) == (Phase.SUCCEEDED, "done\n")

    failed = judge(view, exited(3, ran_for=1.0), output(b"", b"boom\n", exit_code=3), limit=LIMIT)
    assert (failed.phase, failed.reason) == (Phase.FAILED, Reason.NON_ZERO_EXIT)


def test_stdout_longer_than_the_limit_is_cut_and_flagged() -> None:
    stdout = b"a" * LIMIT + b"TAIL"
    result = judge(running_task(), exited(0), CapturedOutput(stdout, b""), limit=LIMIT)
    assert result.phase == Phase.SUCCEEDED
    assert result.stdout == "a" * LIMIT
    assert result.result == "a" * LIMIT
    assert result.stdout_truncated and not result.stderr_truncated
    assert "stdout was cut at 1MB" in result.message


def test_stderr_longer_than_the_limit_is_cut_and_flagged() -> None:
    stderr = b"e" * 100 + b"TAIL"
    result = judge(running_task(), exited(1), CapturedOutput(b"", stderr), limit=100)
    assert result.stderr == "e" * 100
    assert result.stderr_truncated and not result.stdout_truncated


def test_the_reports_truncation_flags_are_honoured() -> None:
    # The supervisor already cut both streams; only its report knows that it did.
    captured = reported(
        b"out\n",
        b"warning: careful\n",
        exit_code=0,
        stdout_bytes=5000,
        stderr_bytes=5000,
        stdout_truncated=True,
        stderr_truncated=True,
    )
    result = judge(running_task(), exited(0), captured, limit=LIMIT)
    assert result.stderr == "warning: careful\n"
    assert "taskyard-report" not in result.stderr
    assert result.stdout_truncated and result.stderr_truncated
    assert (result.phase, result.result) == (Phase.SUCCEEDED, "out\n")


def test_report_at_the_limit_does_not_count_as_stderr() -> None:
    captured = reported(
        b"", b"e" * 100, exit_code=1, stdout_truncated=False, stderr_truncated=False
    )
    result = judge(running_task(), exited(1), captured, limit=100)
    assert result.stderr == "e" * 100
    assert not result.stderr_truncated


def test_supervisor_error_fails_the_task_with_that_error() -> None:
    captured = reported(error="could not write the code to the work area: No space left")
    result = judge(running_task(), exited(3), captured, limit=LIMIT)
    assert (result.phase, result.reason) == (Phase.FAILED, Reason.START_FAILED)
    assert result.result == "could not write the code to the work area: No space left"
    assert result.stderr == ""


def test_code_never_delivered_by_an_earlier_controller_runs_again_as_a_new_attempt() -> None:
    # The controller that started the container was killed before it handed over the code.
    view = running_task(attempt=2)
    result = judge(view, exited(3), reported(**UNDELIVERED), limit=LIMIT, adopted=True)
    assert (result.phase, result.reason) == (Phase.PENDING, Reason.START_FAILED)
    assert result.message == (
        "its code never reached the container: the controller that started it stopped first, "
        "so it never ran; started again as attempt 3"
    )


def test_code_never_delivered_by_this_controller_fails_the_task() -> None:
    result = judge(running_task(), exited(3), reported(**UNDELIVERED), limit=LIMIT)
    assert (result.phase, result.reason, result.result) == (
        Phase.FAILED,
        Reason.START_FAILED,
        "no code was delivered to the container",
    )


@pytest.mark.parametrize("forced", [STOP_CANCELLED, STOP_TIMED_OUT], ids=["cancel", "timeout"])
def test_a_stop_before_the_code_arrived_ends_the_task(forced: Stop) -> None:
    view = running_task(cancel_requested_at=STARTED)
    result = judge(
        view, exited(137), reported(**UNDELIVERED), limit=LIMIT, forced=forced, adopted=True
    )
    assert result.phase == forced.phase


def test_the_supervisor_says_code_not_delivered_in_the_field_judge_looks_for() -> None:
    assert f'report(error="{CODE_NOT_DELIVERED}", undelivered=True)' in SOURCE


def test_only_the_undelivered_field_requeues_not_the_words() -> None:
    # The words alone (an older supervisor, or anything but the supervisor) end the task.
    view = running_task(attempt=2)
    result = judge(view, exited(3), reported(error=CODE_NOT_DELIVERED), limit=LIMIT, adopted=True)
    assert (result.phase, result.reason) == (Phase.FAILED, Reason.START_FAILED)


def test_invalid_utf8_output_is_decoded_with_replacement_characters() -> None:
    result = judge(running_task(), exited(0), output(b"ok \xff\xfe\n", b"\xc3("), limit=LIMIT)
    assert result.stdout == "ok \ufffd\ufffd\n"
    assert result.result == "ok \ufffd\ufffd\n"
    assert result.stderr == "\ufffd("


def test_container_gone_before_judging_keeps_no_exit_code() -> None:
    result = judge(
        running_task(), None, CapturedOutput(b"", b""), limit=LIMIT, forced=STOP_TIMED_OUT
    )
    assert result.phase == Phase.TIMED_OUT
    assert result.exit_code is None


# --- read_report: every field of a container's report is hostile input -----------------------

UNREADABLE = Report(error="the supervisor's report could not be read")


@pytest.mark.parametrize(
    ("line", "parsed"),
    [
        pytest.param(
            b'{"exit_code": 2, "stdout_truncated": true, "stderr_truncated": false}',
            Report(exit_code=2, stdout_truncated=True),
            id="a-whole-report",
        ),
        pytest.param(
            b'{"error": "could not write"}', Report(error="could not write"), id="error-report"
        ),
        pytest.param(b'{"exit_code": "1"}', Report(), id="exit-code-not-an-integer"),
        pytest.param(b'{"exit_code": true}', Report(), id="exit-code-a-bool"),
        pytest.param(
            b'{"exit_code": 1180591620717411303424}', Report(), id="exit-code-2-to-the-70"
        ),
        pytest.param(b'{"exit_code": -1}', Report(), id="exit-code-negative"),
        pytest.param(b'{"exit_code": 256}', Report(), id="exit-code-past-255"),
        pytest.param(
            b'{"exit_code": 255, "signal": 9}',
            Report(exit_code=255, signal=9),
            id="largest-exit-code-and-a-signal",
        ),
        pytest.param(b'{"signal": 65}', Report(), id="signal-out-of-range"),
        pytest.param(
            b'{"stdout_truncated": 1, "stderr_truncated": "yes"}',
            Report(),
            id="flags-that-are-not-bools",
        ),
        pytest.param(b'{"oom_kills": true}', Report(), id="oom-kills-a-bool"),
        pytest.param(b'{"oom_kills": 2}', Report(oom_killed=True), id="oom-kills"),
        pytest.param(
            b'{"error": ["x"]}', Report(error="the supervisor failed"), id="error-not-a-string"
        ),
        pytest.param(b'{"undelivered": true}', Report(), id="undelivered-without-an-error"),
        pytest.param(
            b'{"error": "E", "undelivered": 1}', Report(error="E"), id="undelivered-not-a-bool"
        ),
        pytest.param(b"{not json", UNREADABLE, id="invalid-json"),
        pytest.param(b"[1, 2]", UNREADABLE, id="json-not-an-object"),
        pytest.param(b"\xff\xfe", UNREADABLE, id="invalid-utf8"),
        pytest.param(b"", UNREADABLE, id="empty"),
        pytest.param(b'{"exit_code": ' + b"9" * 5000 + b"}", UNREADABLE, id="too-long"),
    ],
)
def test_read_report(line: bytes, parsed: Report) -> None:
    assert read_report(line) == parsed


def test_a_long_error_is_cut() -> None:
    line = json.dumps({"error": "E" * 3000}).encode()
    error = read_report(line).error
    assert error is not None and len(error) == ERROR_MAX_CHARS + 1
    assert error.startswith("E" * ERROR_MAX_CHARS) and error.endswith("…")


def test_a_report_in_the_task_stderr_is_only_text() -> None:
    # The task printed what looks like a report, then its supervisor died without one.
    forged = b"\x00\x1etaskyard-report:" + json.dumps(UNDELIVERED).encode() + b"\n"
    result = judge(
        running_task(),
        exited(137, ran_for=0.5),
        CapturedOutput(b"", forged),
        limit=LIMIT,
        adopted=True,
    )
    assert result.phase == Phase.FAILED
    assert result.stderr == forged.decode()
