"""Truth table of `controller.reconcile.stuck_reason`: which non-terminal tasks make no progress,
and the words that say why.

`stuck_reason(task, container, now, engine_ok=..., limits=...)` is pure. The grace is 30 s and a
Pending task counts as stuck after 300 s (only while the engine is down); every case is built
from one moment `NOW`.
"""

from datetime import UTC, datetime, timedelta

import pytest

from controller.reconcile import Reset, StuckLimits, TaskView, decide, stuck_reason
from controller.runtime import ObservedContainer
from models.phases import Phase

NOW = datetime(2026, 11, 27, 22, 0, 0, tzinfo=UTC)
LIMITS = StuckLimits(grace_seconds=30, pending_seconds=300)
SCHEDULED_MSG = "scheduled more than 30 s ago, but its container has not started"
OVERDUE_MSG = "still running more than 30 s past its deadline: its container could not be stopped"
ENGINE_MSG = "the container engine is unavailable, so its container cannot be observed"
PENDING_ENGINE_MSG = "pending while the container engine is unavailable"


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


def task(
    phase: Phase,
    *,
    created: float = 1000,
    scheduled: float | None = None,
    deadline_in: float | None = None,
    reset_to: Phase | None = None,
) -> TaskView:
    """A task created `created` s ago, scheduled `scheduled` s ago, with a deadline
    `deadline_in` s from now (negative: already past)."""
    return TaskView(
        id="t1",
        phase=phase,
        attempt=1,
        timeout_seconds=30,
        ram_bytes=64 << 20,
        created_at=ago(created),
        scheduled_at=ago(scheduled) if scheduled is not None else None,
        deadline_at=NOW + timedelta(seconds=deadline_in) if deadline_in is not None else None,
        reset_to=reset_to,
    )


def container(state: str) -> ObservedContainer:
    return ObservedContainer(
        name="taskyard-o-t1-1",
        task_id="t1",
        attempt=1,
        state=state,
        started_at=None if state == "created" else ago(60),
        finished_at=ago(1) if state == "exited" else None,
        exit_code=0 if state == "exited" else None,
    )


CASES = [
    # --- the engine works ------------------------------------------------------------------
    pytest.param(
        task(Phase.PENDING, created=10_000),
        None,
        True,
        None,
        id="pending-for-hours-engine-up-is-waiting-not-stuck",
    ),
    pytest.param(
        task(Phase.SCHEDULED, scheduled=5),
        None,
        True,
        None,
        id="scheduled-within-grace-no-container",
    ),
    pytest.param(
        task(Phase.SCHEDULED, scheduled=29.9), None, True, None, id="scheduled-just-under-grace"
    ),
    pytest.param(
        task(Phase.SCHEDULED, scheduled=30),
        None,
        True,
        SCHEDULED_MSG,
        id="scheduled-exactly-grace-no-container",
    ),
    pytest.param(
        task(Phase.SCHEDULED, scheduled=120),
        None,
        True,
        SCHEDULED_MSG,
        id="scheduled-past-grace-no-container",
    ),
    pytest.param(
        task(Phase.SCHEDULED, scheduled=120),
        container("created"),
        True,
        SCHEDULED_MSG,
        id="scheduled-past-grace-container-never-started",
    ),
    pytest.param(
        task(Phase.SCHEDULED, scheduled=120),
        container("running"),
        True,
        None,
        id="scheduled-past-grace-container-running-is-adopted",
    ),
    pytest.param(
        task(Phase.SCHEDULED, scheduled=120),
        container("exited"),
        True,
        None,
        id="scheduled-past-grace-container-exited-is-judged",
    ),
    pytest.param(
        task(Phase.RUNNING, deadline_in=10),
        container("running"),
        True,
        None,
        id="running-before-deadline",
    ),
    pytest.param(
        task(Phase.RUNNING, deadline_in=-10),
        container("running"),
        True,
        None,
        id="running-past-deadline-within-grace",
    ),
    pytest.param(
        task(Phase.RUNNING, deadline_in=-30),
        container("running"),
        True,
        OVERDUE_MSG,
        id="running-past-deadline-exactly-grace",
    ),
    pytest.param(
        task(Phase.RUNNING, deadline_in=-500),
        container("running"),
        True,
        OVERDUE_MSG,
        id="running-long-past-deadline-plus-grace",
    ),
    pytest.param(
        task(Phase.RUNNING), container("running"), True, None, id="running-without-deadline"
    ),
    # --- the engine is down ----------------------------------------------------------------
    pytest.param(
        task(Phase.PENDING, created=10), None, False, None, id="pending-briefly-engine-down"
    ),
    pytest.param(
        task(Phase.PENDING, created=300),
        None,
        False,
        PENDING_ENGINE_MSG,
        id="pending-past-threshold-engine-down",
    ),
    pytest.param(
        task(Phase.SCHEDULED, scheduled=1), None, False, ENGINE_MSG, id="scheduled-engine-down"
    ),
    pytest.param(
        task(Phase.RUNNING, deadline_in=20), None, False, ENGINE_MSG, id="running-engine-down"
    ),
    # --- never stuck -----------------------------------------------------------------------
    pytest.param(task(Phase.SUCCEEDED), None, True, None, id="succeeded"),
    pytest.param(task(Phase.FAILED), None, False, None, id="failed-engine-down"),
    pytest.param(task(Phase.TIMED_OUT), None, True, None, id="timed-out"),
    pytest.param(task(Phase.CANCELLED), None, True, None, id="cancelled"),
    pytest.param(
        task(Phase.SCHEDULED, scheduled=120, reset_to=Phase.PENDING),
        None,
        True,
        None,
        id="reset-requested-scheduled",
    ),
    pytest.param(
        task(Phase.RUNNING, deadline_in=-500, reset_to=Phase.FAILED),
        container("running"),
        False,
        None,
        id="reset-requested-running-engine-down",
    ),
]


@pytest.mark.parametrize(("view", "observed", "engine_ok", "expected"), CASES)
def test_stuck_reason(
    view: TaskView, observed: ObservedContainer | None, engine_ok: bool, expected: str | None
) -> None:
    assert stuck_reason(view, observed, NOW, engine_ok=engine_ok, limits=LIMITS) == expected


@pytest.mark.parametrize("later", [0, 1, 60, 3600])
@pytest.mark.parametrize(
    ("view", "observed", "engine_ok"),
    [
        pytest.param(task(Phase.SCHEDULED, scheduled=31), None, True, id="scheduled"),
        pytest.param(
            task(Phase.RUNNING, deadline_in=-31), container("running"), True, id="overdue"
        ),
        pytest.param(task(Phase.RUNNING, deadline_in=5), None, False, id="engine-down"),
        pytest.param(task(Phase.PENDING, created=301), None, False, id="pending-engine-down"),
    ],
)
def test_the_words_stay_the_same_while_the_condition_lasts(
    view: TaskView, observed: ObservedContainer | None, engine_ok: bool, later: float
) -> None:
    # The controller writes the record only when the words change, so they must not carry
    # a growing number of seconds.
    first = stuck_reason(view, observed, NOW, engine_ok=engine_ok, limits=LIMITS)
    again = stuck_reason(
        view, observed, NOW + timedelta(seconds=later), engine_ok=engine_ok, limits=LIMITS
    )
    assert first is not None
    assert again == first


def test_the_grace_in_the_words_follows_the_setting() -> None:
    limits = StuckLimits(grace_seconds=5, pending_seconds=300)
    why = stuck_reason(task(Phase.SCHEDULED, scheduled=6), None, NOW, engine_ok=True, limits=limits)
    assert why == "scheduled more than 5 s ago, but its container has not started"
    assert (
        stuck_reason(task(Phase.SCHEDULED, scheduled=4), None, NOW, engine_ok=True, limits=limits)
        is None
    )


@pytest.mark.parametrize("phase", list(Phase))
@pytest.mark.parametrize("to", [Phase.PENDING, Phase.FAILED])
def test_a_reset_request_comes_before_every_other_decision(phase: Phase, to: Phase) -> None:
    view = task(phase, scheduled=120, deadline_in=-500, reset_to=to)
    for observed in (None, container("running"), container("exited"), container("created")):
        assert decide(view, observed, NOW) == Reset(to)
