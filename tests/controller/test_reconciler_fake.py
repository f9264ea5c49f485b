"""The reconcile loop against the in-memory fake runtime: every decision of `Reconciler`, over a
real database (SQLite, then PostgreSQL), with tasks submitted through the real API app
(`fake_world`).
"""

import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any

import pytest
from fake_world import HOST, OWNER, World, name_of, running, spec_for
from sqlalchemy import event

import controller.observe
from controller.capacity import HostCapacity
from controller.errors import RuntimeUnavailable, StartRejected
from controller.gpus import GpuInfo
from controller.loop import Reconciler
from controller.runtime import (
    OWNER_LABEL,
    TASK_LABEL,
)
from controller.service import ControllerService
from controller.status import move
from models.clock import utcnow
from models.phases import Phase, Reason
from models.quantities import GIB
from models.tables import Capacity, Task
from sandbox.supervisor import Report

# --- the happy path -------------------------------------------------------------------------


def test_pending_task_is_scheduled_and_started_in_one_pass(world: World) -> None:
    task_id = world.submit("2")

    world.once()

    status = world.status(task_id)
    assert status["phase"] == "Running"
    assert status["attempt"] == 1
    assert sorted(status["assigned"]["cpus"]) == [0, 1]
    assert status["assigned"]["gpus"] == []
    assert status["started_at"] is not None
    assert status["deadline_at"] is not None
    assert world.fake.runs == [name_of(task_id)]
    container = world.fake.containers[name_of(task_id)]
    assert container.observed.state == "running"
    assert container.spec.labels[TASK_LABEL] == task_id
    assert container.spec.labels[OWNER_LABEL] == OWNER
    assert container.spec.cpus == (0, 1)
    assert container.spec.ram == 64 * 1024 * 1024


def test_a_running_task_is_left_alone_by_later_passes(world: World) -> None:
    task_id = running(world)
    version = world.task(task_id)["resource_version"]

    world.once()
    world.once()

    assert world.phase(task_id) == "Running"
    assert world.task(task_id)["resource_version"] == version
    assert len(world.fake.runs) == 1


def test_exit_zero_succeeds_with_stdout_as_result(world: World) -> None:
    task_id = running(world)

    world.fake.finish(name_of(task_id), 0, stdout=b"hi\n")
    world.once()

    status = world.status(task_id)
    assert status["phase"] == "Succeeded"
    assert status["reason"] == "Completed"
    assert status["result"] == "hi\n"
    assert status["stdout"] == "hi\n"
    assert status["stderr"] == ""
    assert status["exit_code"] == 0
    assert status["finished_at"] is not None
    assert name_of(task_id) not in world.fake.names()


def test_non_zero_exit_fails_with_stderr_in_result(world: World) -> None:
    task_id = running(world)

    world.fake.finish(name_of(task_id), 1, stderr=b"Traceback\nValueError: boom\n")
    world.once()

    status = world.status(task_id)
    assert status["phase"] == "Failed"
    assert status["reason"] == "NonZeroExit"
    assert status["exit_code"] == 1
    assert "ValueError: boom" in status["result"]
    assert "taskyard-report" not in status["stderr"]
    assert name_of(task_id) not in world.fake.names()


def test_oom_killed_fails_naming_the_memory_limit(world: World) -> None:
    task_id = running(world)

    world.fake.finish(name_of(task_id), 137, oom_killed=True, report=False)
    world.once()

    status = world.status(task_id)
    assert status["phase"] == "Failed"
    assert status["reason"] == "OOMKilled"
    assert "out of memory" in status["result"]
    assert "64MB" in status["result"]
    assert name_of(task_id) not in world.fake.names()


def test_transitions_are_recorded_in_order(world: World) -> None:
    task_id = running(world)
    world.fake.finish(name_of(task_id), 0, stdout=b"hi\n")
    world.once()

    events = world.events(task_id)

    assert [(e["from_phase"], e["to_phase"]) for e in events] == [
        (None, "Pending"),
        ("Pending", "Scheduled"),
        ("Scheduled", "Running"),
        ("Running", "Succeeded"),
    ]
    assert [e["reason"] for e in events] == ["Created", "Scheduled", "Started", "Completed"]
    seqs = [e["seq"] for e in events]
    versions = [e["resource_version"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == 4
    assert versions == sorted(versions) and len(set(versions)) == 4
    assert world.task(task_id)["resource_version"] == versions[-1]


# --- deadlines and cancellation -------------------------------------------------------------


def test_deadline_passed_times_out_and_kills_the_container(world: World) -> None:
    task_id = running(world, timeout=5)
    world.once()
    assert world.phase(task_id) == "Running"

    world.clock.advance(6)
    world.once()
    # The pass sent SIGKILL and went on: the next one, woken by the exit, ends the task.
    assert world.fake.kills == [name_of(task_id)]
    assert world.phase(task_id) == "Running"
    world.once()

    status = world.status(task_id)
    assert status["phase"] == "TimedOut"
    assert status["reason"] == "DeadlineExceeded"
    assert "5 s timeout" in status["result"]
    assert name_of(task_id) not in world.fake.names()


def test_a_container_removed_after_its_kill_still_ends_the_task_timed_out(
    world: World,
) -> None:
    task_id = running(world, timeout=5)
    world.clock.advance(6)
    world.once()  # sends SIGKILL
    world.fake.remove(name_of(task_id))  # `docker rm -f` before the next pass looks

    world.once()

    status = world.status(task_id)
    assert (status["phase"], status["reason"]) == ("TimedOut", "DeadlineExceeded")
    assert world.fake.runs == [name_of(task_id)]  # not retried as a lost container


def test_task_not_timed_out_before_its_deadline(world: World) -> None:
    task_id = running(world, timeout=5)

    world.clock.advance(3)
    world.once()

    assert world.phase(task_id) == "Running"
    assert name_of(task_id) in world.fake.names()


def test_cancel_of_running_task_stops_it(world: World) -> None:
    task_id = running(world)

    world.cancel(task_id)
    world.once_and_exit()

    status = world.status(task_id)
    assert status["phase"] == "Cancelled"
    assert status["reason"] == "Cancelled"
    assert status["result"] == "cancelled"
    assert name_of(task_id) not in world.fake.names()


def test_cancel_of_pending_task_never_runs_it(world: World) -> None:
    task_id = world.submit()

    world.cancel(task_id)
    world.once()

    status = world.status(task_id)
    assert status["phase"] == "Cancelled"
    assert status["reason"] == "Cancelled"
    assert world.fake.runs == []
    assert world.fake.names() == set()


# --- scheduling -----------------------------------------------------------------------------


def test_two_tasks_wanting_all_cpus_run_one_after_the_other(world: World) -> None:
    first = world.submit("2")
    second = world.submit("2")

    world.once()
    world.once()

    assert world.phase(first) == "Running"
    assert world.phase(second) == "Pending"
    waiting = world.status(second)
    assert waiting["reason"] == "Unschedulable"
    assert "Insufficient cpu" in waiting["message"]
    assert world.fake.runs == [name_of(first)]

    world.fake.finish(name_of(first), 0, stdout=b"done\n")
    world.once()

    assert world.phase(first) == "Succeeded"
    assert world.phase(second) == "Running"
    assert sorted(world.status(second)["assigned"]["cpus"]) == [0, 1]
    assert world.fake.runs == [name_of(first), name_of(second)]


def test_tasks_that_fit_together_run_together_on_distinct_cores(world: World) -> None:
    first = world.submit("1")
    second = world.submit("1")

    world.once()

    a = world.status(first)["assigned"]["cpus"]
    b = world.status(second)["assigned"]["cpus"]
    assert world.phase(first) == world.phase(second) == "Running"
    assert len(a) == len(b) == 1
    assert set(a).isdisjoint(b)


def test_capacity_row_reports_what_is_handed_out(world: World) -> None:
    running(world, "2")

    with world.db.read() as session:
        row = session.get(Capacity, "local")
    assert row is not None
    assert row.cpu_ids == [0, 1]
    assert row.allocated_cpus == [0, 1]
    assert row.allocated_ram == 64 * 1024 * 1024
    assert row.runtime_ok is True
    assert row.heartbeat_at is not None


def test_a_queue_that_waits_is_not_loaded_again_on_every_pass(world: World) -> None:
    first = running(world, "2")
    queued = [world.submit("2") for _ in range(3)]
    world.once()  # the queue is loaded, and told why it waits
    world.once()  # and loaded again, the messages having moved its versions
    loaded: list[str] = []

    def on_load(task: Task, _context: object) -> None:
        loaded.append(task.id)

    event.listen(Task, "load", on_load)
    try:
        world.once()
        assert loaded == []  # nothing changed: nothing is built again

        world.cancel(queued[1])
        world.once()
        assert set(loaded) == {queued[1]}  # only the one another writer changed
        assert world.phase(queued[1]) == "Cancelled"  # and the pass saw its change

        world.fake.finish(name_of(first), 0, stdout=b"done\n")
        world.once()  # the loop's own writes move versions too: it sees its own moves
        assert world.phase(first) == "Succeeded"
        assert world.phase(queued[0]) == "Running"
        assert world.phase(queued[2]) == "Pending"
    finally:
        event.remove(Task, "load", on_load)


# --- the engine goes away -------------------------------------------------------------------


def test_engine_down_keeps_tasks_waiting_and_running_tasks_alive(world: World) -> None:
    busy = running(world)
    world.fake.available = False
    waiting = world.submit()

    world.once()
    world.once()

    assert world.phase(busy) == "Running"
    status = world.status(waiting)
    assert status["phase"] == "Pending"
    assert status["reason"] == "RuntimeUnavailable"
    assert "down" in status["message"]
    with world.db.read() as session:
        row = session.get(Capacity, "local")
    assert row is not None and row.runtime_ok is False

    world.fake.available = True
    world.once()

    assert world.phase(busy) == "Running"
    assert world.phase(waiting) == "Running"
    assert world.fake.runs == [name_of(busy), name_of(waiting)]

    world.fake.finish(name_of(busy), 0, stdout=b"ok\n")
    world.once()
    assert world.phase(busy) == "Succeeded"


def test_engine_down_mid_pass_on_list_does_not_lose_running_tasks(world: World) -> None:
    busy = running(world)

    def broken_list(**_: Any) -> list[Any]:
        raise RuntimeUnavailable("connection reset")

    world.fake.list_owned = broken_list  # type: ignore[method-assign]
    world.once()

    assert world.phase(busy) == "Running"


# --- crash recovery: a new controller over the same database and engine ----------------------


def scheduled_without_container(world: World) -> str:
    """A task left Scheduled with attempt 1 and no container, as a crash before run leaves it."""
    task_id = world.submit()
    world.fake.fail_next_run = RuntimeUnavailable("engine hiccup")
    world.once()
    status = world.status(task_id)
    assert (status["phase"], status["attempt"]) == ("Scheduled", 1)
    assert world.fake.runs == []
    return task_id


def test_scheduled_task_with_only_a_created_container_is_replaced_and_started(
    world: World,
) -> None:
    task_id = scheduled_without_container(world)
    world.fake.create_only(spec_for(task_id))

    world.new_reconciler()
    world.once()
    world.once()

    assert world.phase(task_id) == "Running"
    assert world.status(task_id)["attempt"] == 1
    assert world.fake.runs == [name_of(task_id)]
    assert world.fake.containers[name_of(task_id)].observed.state == "running"


def test_scheduled_task_with_a_running_container_is_adopted_not_restarted(
    world: World,
) -> None:
    task_id = scheduled_without_container(world)
    world.fake.run(spec_for(task_id))  # started just before the crash
    runs = len(world.fake.runs)

    world.new_reconciler()
    world.once()
    world.once()

    status = world.status(task_id)
    assert status["phase"] == "Running"
    assert status["started_at"] is not None
    assert status["deadline_at"] is not None
    assert len(world.fake.runs) == runs


def test_running_task_with_running_container_is_adopted(world: World) -> None:
    task_id = running(world)
    version = world.task(task_id)["resource_version"]

    world.new_reconciler()
    world.once()

    assert world.phase(task_id) == "Running"
    assert world.task(task_id)["resource_version"] == version
    assert len(world.fake.runs) == 1

    world.fake.finish(name_of(task_id), 0, stdout=b"after restart\n")
    world.once()
    assert world.status(task_id)["result"] == "after restart\n"


def test_exited_container_of_running_task_is_finished_after_restart(world: World) -> None:
    task_id = running(world)
    world.fake.finish(name_of(task_id), 0, stdout=b"hi\n")  # exits while no controller runs

    world.new_reconciler()
    world.once()

    status = world.status(task_id)
    assert status["phase"] == "Succeeded"
    assert status["result"] == "hi\n"
    assert name_of(task_id) not in world.fake.names()
    assert len(world.fake.runs) == 1


def test_running_task_whose_container_vanished_is_retried_once_then_fails(
    world: World,
) -> None:
    task_id = running(world)
    del world.fake.containers[name_of(task_id)]  # docker rm -f behind our back

    world.new_reconciler()
    world.once()

    status = world.status(task_id)
    assert (status["phase"], status["attempt"]) == ("Running", 2)
    assert world.fake.runs == [name_of(task_id, 1), name_of(task_id, 2)]
    requeued = [e for e in world.events(task_id) if e["to_phase"] == "Pending"][-1]
    assert (requeued["from_phase"], requeued["reason"]) == ("Running", "ContainerLost")
    assert "retried once, as attempt 2" in requeued["message"]

    del world.fake.containers[name_of(task_id, 2)]  # and again
    world.once()

    status = world.status(task_id)
    assert (status["phase"], status["reason"], status["attempt"]) == ("Failed", "ContainerLost", 2)
    assert "for the second time" in status["result"]
    assert len(world.fake.runs) == 2
    phases = [(e["from_phase"], e["to_phase"]) for e in world.events(task_id)]
    assert phases == [
        (None, "Pending"),
        ("Pending", "Scheduled"),
        ("Scheduled", "Running"),
        ("Running", "Pending"),
        ("Pending", "Scheduled"),
        ("Scheduled", "Running"),
        ("Running", "Failed"),
    ]


def test_an_admin_requeue_does_not_count_as_a_lost_container(world: World) -> None:
    task_id = running(world)
    world.write_task(task_id, reset_requested_to="Pending")
    world.once()
    world.once()
    assert (world.phase(task_id), world.status(task_id)["attempt"]) == ("Running", 2)

    del world.fake.containers[name_of(task_id, 2)]
    world.once()

    assert (world.phase(task_id), world.status(task_id)["attempt"]) == ("Running", 3)


def test_a_container_killed_from_outside_fails_without_a_retry(world: World) -> None:
    task_id = running(world)
    # `docker kill`: SIGKILL to the init, so no supervisor report; not our deadline.
    world.fake.finish(name_of(task_id), 137, stdout=b"up\n", report=False)

    world.once()

    status = world.status(task_id)
    assert (status["phase"], status["reason"], status["exit_code"]) == (
        "Failed",
        "NonZeroExit",
        137,
    )
    assert "killed by SIGKILL from outside the task" in status["result"]
    assert status["stdout"] == "up\n"
    assert len(world.fake.runs) == 1


def never_delivered(world: World, name: str) -> None:
    """The container gave up waiting for its code, as after a controller killed mid-start."""
    world.fake.finish(
        name, 3, report=Report(error="no code was delivered to the container", undelivered=True)
    )


def test_code_never_delivered_before_a_crash_runs_again_as_a_new_attempt(world: World) -> None:
    task_id = running(world)
    world.new_reconciler()  # the controller that started it died before handing over the code
    never_delivered(world, name_of(task_id))

    world.once()

    status = world.status(task_id)
    assert (status["phase"], status["attempt"]) == ("Running", 2)
    assert name_of(task_id, 1) not in world.fake.names()
    requeued = [e for e in world.events(task_id) if e["to_phase"] == "Pending"][-1]
    assert requeued["reason"] == "StartFailed"
    assert requeued["message"].endswith("so it never ran; started again as attempt 2")
    world.fake.finish(name_of(task_id, 2), 0, stdout=b"at last\n")
    world.once()
    assert (world.phase(task_id), world.status(task_id)["result"]) == ("Succeeded", "at last\n")


def test_code_never_delivered_by_a_live_controller_fails_the_task(world: World) -> None:
    task_id = running(world)
    never_delivered(world, name_of(task_id))

    world.once()

    status = world.status(task_id)
    assert (status["phase"], status["reason"], status["attempt"]) == ("Failed", "StartFailed", 1)
    assert status["result"] == "no code was delivered to the container"
    assert world.fake.names() == set()


def test_only_a_restart_makes_a_container_adopted(world: World) -> None:
    first = running(world)
    world.new_reconciler()
    second = running(world)  # started by the new controller
    for task_id in (first, second):
        never_delivered(world, name_of(task_id))

    world.once()

    assert (world.phase(first), world.status(first)["attempt"]) == ("Running", 2)
    assert (world.phase(second), world.status(second)["reason"]) == ("Failed", "StartFailed")


def test_container_of_terminal_task_is_removed(world: World) -> None:
    task_id = running(world)
    world.fake.finish(name_of(task_id), 0, stdout=b"hi\n")
    world.once()
    world.fake.run(spec_for(task_id))  # left behind, still running

    world.new_reconciler()
    world.once()

    assert world.phase(task_id) == "Succeeded"
    assert name_of(task_id) not in world.fake.names()


def test_container_whose_task_does_not_exist_is_removed(world: World) -> None:
    world.fake.run(spec_for("ghost"))
    world.fake.create_only(spec_for("ghost2"))

    world.once()

    assert world.fake.names() == set()


def test_container_of_an_older_attempt_is_removed(world: World) -> None:
    task_id = running(world)
    # As if an admin reset requeued it and attempt 2 was scheduled just before a crash.
    world.write_task(task_id, phase="Scheduled", attempt=2)

    world.new_reconciler()
    world.once()

    status = world.status(task_id)
    assert status["phase"] == "Running"
    assert status["attempt"] == 2
    assert name_of(task_id, 1) not in world.fake.names()
    assert world.fake.containers[name_of(task_id, 2)].observed.state == "running"


def test_terminal_task_never_changes_phase_again(world: World) -> None:
    task_id = running(world)
    world.fake.finish(name_of(task_id), 0, stdout=b"hi\n")
    world.once()
    before = world.task(task_id)
    transitions = world.transition_count()

    world.fake.run(spec_for(task_id))
    world.fake.finish(name_of(task_id), 1, stderr=b"late\n")
    world.new_reconciler()
    world.once()
    world.once()

    after = world.task(task_id)
    assert after["status"]["phase"] == "Succeeded"
    assert after["status"]["result"] == "hi\n"
    assert after["resource_version"] == before["resource_version"]
    assert world.transition_count() == transitions
    assert world.client.delete(f"/tasks/{task_id}").status_code == 409


# --- start errors ---------------------------------------------------------------------------


def test_start_rejected_fails_the_task(world: World) -> None:
    task_id = world.submit()
    world.fake.fail_next_run = StartRejected("image taskyard-runner:1 not found")

    world.once()
    world.once()

    status = world.status(task_id)
    assert status["phase"] == "Failed"
    assert status["reason"] == "StartFailed"
    assert "taskyard-runner:1" in status["message"]
    assert world.fake.runs == []
    assert world.fake.names() == set()


def test_runtime_unavailable_on_start_retries_once_on_a_later_pass(world: World) -> None:
    task_id = scheduled_without_container(world)
    assert world.status(task_id)["reason"] == "Scheduled"

    world.once()
    world.once()
    world.once()

    status = world.status(task_id)
    assert status["phase"] == "Running"
    assert status["attempt"] == 1
    assert world.fake.runs == [name_of(task_id)]


def test_failure_of_one_task_does_not_stop_the_others(world: World) -> None:
    first = world.submit()
    second = world.submit()
    world.fake.fail_next_run = StartRejected("bad")

    world.once()

    assert world.phase(first) == "Failed"
    assert world.phase(second) == "Running"


# --- guarded transitions --------------------------------------------------------------------


def test_move_from_a_phase_the_task_left_does_nothing(world: World) -> None:
    task_id = world.submit()
    count = world.transition_count()

    with world.db.write() as session:
        moved = move(
            session,
            task_id=task_id,
            from_phase=Phase.SCHEDULED,
            at_attempt=0,
            to_phase=Phase.RUNNING,
            reason=Reason.STARTED,
            message="no",
            now=utcnow(),
        )

    assert moved is False
    assert world.transition_count() == count
    assert world.phase(task_id) == "Pending"
    assert world.task(task_id)["resource_version"] == 1


def test_move_at_a_stale_attempt_does_nothing(world: World) -> None:
    task_id = world.submit()
    count = world.transition_count()

    with world.db.write() as session:
        moved = move(
            session,
            task_id=task_id,
            from_phase=Phase.PENDING,
            at_attempt=3,
            to_phase=Phase.SCHEDULED,
            reason=Reason.SCHEDULED,
            message="no",
            now=utcnow(),
        )

    assert moved is False
    assert world.transition_count() == count
    assert world.phase(task_id) == "Pending"


def test_move_twice_only_the_first_wins(world: World) -> None:
    task_id = world.submit()
    count = world.transition_count()

    results = []
    for _ in range(2):
        with world.db.write() as session:
            results.append(
                move(
                    session,
                    task_id=task_id,
                    from_phase=Phase.PENDING,
                    at_attempt=1,
                    to_phase=Phase.CANCELLED,
                    reason=Reason.CANCELLED,
                    message="cancelled",
                    now=utcnow(),
                )
            )

    assert results == [True, False]
    assert world.transition_count() == count + 1
    events = world.events(task_id)
    assert events[-1]["from_phase"] == "Pending"
    assert events[-1]["to_phase"] == "Cancelled"
    assert events[-1]["resource_version"] == world.task(task_id)["resource_version"] == 2


# --- more outcomes and orderings ------------------------------------------------------------


def test_exit_seen_after_the_deadline_still_succeeds(world: World) -> None:
    # The code ended in time; the controller only noticed late (it was busy or restarting).
    task_id = running(world, timeout=5)
    world.fake.finish(name_of(task_id), 0, stdout=b"in time\n")

    world.clock.advance(60)
    world.once()

    status = world.status(task_id)
    assert status["phase"] == "Succeeded"
    assert status["result"] == "in time\n"


def test_cancel_after_the_container_exited_keeps_the_real_outcome(world: World) -> None:
    task_id = running(world)
    world.fake.finish(name_of(task_id), 0, stdout=b"done\n")
    world.cancel(task_id)

    world.once()

    status = world.status(task_id)
    assert status["phase"] == "Succeeded"
    assert status["result"] == "done\n"


def test_cancel_of_scheduled_task_without_container_never_runs_it(world: World) -> None:
    task_id = scheduled_without_container(world)
    world.cancel(task_id)

    world.once()

    assert world.phase(task_id) == "Cancelled"
    assert world.fake.runs == []
    assert world.fake.names() == set()


def test_cancel_of_scheduled_task_with_running_container_after_restart(world: World) -> None:
    task_id = scheduled_without_container(world)
    world.fake.run(spec_for(task_id))
    world.cancel(task_id)

    world.new_reconciler()
    world.once_and_exit()

    assert world.phase(task_id) == "Cancelled"
    assert world.fake.names() == set()
    assert len(world.fake.runs) == 1


def test_scheduled_task_whose_container_already_exited_is_finished_after_restart(
    world: World,
) -> None:
    task_id = scheduled_without_container(world)
    world.fake.run(spec_for(task_id))
    world.fake.finish(name_of(task_id), 0, stdout=b"quick\n")

    world.new_reconciler()
    world.once()

    assert world.status(task_id)["result"] == "quick\n"
    assert [(e["from_phase"], e["to_phase"]) for e in world.events(task_id)][-2:] == [
        ("Scheduled", "Running"),
        ("Running", "Succeeded"),
    ]
    assert len(world.fake.runs) == 1
    assert world.fake.names() == set()


def test_best_effort_task_runs_without_reserving_a_core(world: World) -> None:
    busy = running(world, "2")
    best_effort = world.submit("0")

    world.once()

    status = world.status(best_effort)
    assert world.phase(busy) == "Running"
    assert status["phase"] == "Running"
    assert status["assigned"]["cpus"] == []
    spec = world.fake.containers[name_of(best_effort)].spec
    assert spec.cpus == ()
    assert spec.cpu_quota == world.settings.best_effort_cpu_quota


def test_long_small_task_does_not_overtake_a_waiting_large_one(world: World) -> None:
    running(world, "1", timeout=30)
    large = world.submit("2", timeout=30)
    small_long = world.submit("1", timeout=600)

    world.once()

    assert world.phase(large) == "Pending"
    assert world.phase(small_long) == "Pending"
    assert world.status(small_long)["message"] == (
        "would delay an earlier task; queued behind an earlier task"
    )


def test_short_small_task_may_fill_the_gap_before_a_waiting_large_one(world: World) -> None:
    running(world, "1", timeout=30)
    large = world.submit("2", timeout=30)
    small_short = world.submit("1", timeout=5)

    world.once()

    assert world.phase(large) == "Pending"
    assert world.phase(small_short) == "Running"


def test_task_larger_than_the_host_fails_instead_of_waiting_forever(world: World) -> None:
    task_id = world.submit("3")  # accepted: the controller had not reported capacity yet

    world.once()

    status = world.status(task_id)
    assert status["phase"] == "Failed"
    assert status["reason"] == "ExceedsCapacity"
    assert "allocate 2" in status["message"]
    assert world.fake.runs == []


def test_finished_task_gives_its_cores_back(world: World) -> None:
    task_id = running(world, "2")
    world.fake.finish(name_of(task_id), 0)

    world.once()

    with world.db.read() as session:
        row = session.get(Capacity, "local")
    assert row is not None
    assert row.allocated_cpus == []
    assert row.allocated_ram == 0


def test_timeout_counts_on_the_controller_clock_despite_engine_clock_skew(
    world: World,
) -> None:
    # The engine's clock runs 20 s behind the controller's: a 30 s task must still get 30 s.
    world.fake.clock_skew = timedelta(seconds=-20)
    task_id = running(world, timeout=30)

    world.clock.advance(15)
    world.once()

    assert world.phase(task_id) == "Running"

    world.clock.advance(16)
    world.once_and_exit()

    assert world.phase(task_id) == "TimedOut"


def test_engine_failing_to_kill_at_the_deadline_retries_next_pass(world: World) -> None:
    task_id = running(world, timeout=5)
    real_kill = world.fake.kill
    calls: list[str] = []

    def kill_once_unreachable(name: str) -> Any:
        calls.append(name)
        if len(calls) == 1:
            raise RuntimeUnavailable("engine restarting")
        return real_kill(name)

    world.fake.kill = kill_once_unreachable  # type: ignore[method-assign]
    world.clock.advance(6)

    world.once()
    assert world.phase(task_id) == "Running"

    world.once_and_exit()
    assert world.phase(task_id) == "TimedOut"
    assert name_of(task_id) not in world.fake.names()


def test_waiting_task_is_not_rewritten_by_passes_that_change_nothing(world: World) -> None:
    running(world, "2")
    waiting = world.submit("2")
    world.once()
    version = world.task(waiting)["resource_version"]

    world.once()
    world.once()

    assert world.task(waiting)["resource_version"] == version


def test_gpu_tasks_share_nothing_without_gpu_sharing(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    gpu = GpuInfo(index=0, name="Test GPU", uuid="GPU-0", memory_bytes=16 * GIB)
    host = HostCapacity(**{**HOST.__dict__, "gpus": (gpu,)})
    monkeypatch.setattr(controller.observe, "discover_capacity", lambda *_a, **_k: host)
    world.new_reconciler()
    payload = {
        "task_type": "execute_code",
        "code": "x",
        "resources": {"cpu": "1", "gpu": "1", "ram": "64MB", "storage": "100MB"},
    }
    first = world.client.post("/tasks", json=payload).json()["id"]
    second = world.client.post("/tasks", json=payload).json()["id"]

    world.once()

    assert world.status(first)["assigned"]["gpus"] == [0]
    assert world.fake.containers[name_of(first)].spec.gpus == (0,)
    assert world.phase(second) == "Pending"
    assert "Insufficient gpu" in world.status(second)["message"]


def test_idle_controller_service_does_not_wake_itself(world: World) -> None:
    # With nothing to do, passes come once per interval; the controller's own status writes
    # (its heartbeat) must not count as "new work in the database".
    reconciler = Reconciler(
        world.settings, world.db, world.fake, owner=OWNER, gpu_probe=lambda: ([], "no gpus")
    )  # the real clock
    passes: list[datetime] = []
    reconcile_once = reconciler.reconcile_once

    def counting() -> Any:
        passes.append(utcnow())
        return reconcile_once()

    reconciler.reconcile_once = counting  # type: ignore[method-assign]
    service = ControllerService(reconciler, world.db, interval=1.0)
    service.start()
    try:
        deadline = time.monotonic() + 15
        while len(passes) < 6:
            assert time.monotonic() < deadline, f"{len(passes)} passes in 15 s, 1 s apart"
            time.sleep(0.05)
    finally:
        service.stop()

    # The first report of the host and each heartbeat (every few seconds) are commits the
    # database watch sees: each wakes one pass at once. Passes never wake pass after pass.
    # The first pass commits twice (the host's record, the first compaction); PostgreSQL's
    # notifications of the two may come apart and wake a pass each, so its gap is left out.
    gaps = [(later - earlier).total_seconds() for earlier, later in pairwise(passes[1:])]
    assert not any(a < 0.5 and b < 0.5 for a, b in pairwise(gaps)), f"passes {gaps} s apart"
    assert max(gaps) > 0.9, f"passes {gaps} s apart with a 1 s interval"


def test_controller_service_wakes_on_a_new_task(world: World) -> None:
    service = ControllerService(world.reconciler, world.db, interval=30.0)
    first_pass = threading.Event()
    reconcile_once = world.reconciler.reconcile_once

    def noting() -> Any:
        report = reconcile_once()
        first_pass.set()
        return report

    world.reconciler.reconcile_once = noting  # type: ignore[method-assign]
    service.start()
    try:
        assert first_pass.wait(10), "no pass ran at start"  # the next is 30 s away
        task_id = world.submit()
        deadline = time.monotonic() + 5
        while world.phase(task_id) != "Running" and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        service.stop()

    assert world.phase(task_id) == "Running"


# --- background removal ---------------------------------------------------------------------


def test_a_container_being_removed_in_the_background_is_not_removed_again(
    world: World,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Garbage collection leaves a finished task's container to its background removal while
    that runs; should the removal fail, the next pass removes the container itself."""
    task_id = running(world)
    name = name_of(task_id)
    in_flight: list[Callable[[], None]] = []
    removals: list[str] = []
    real_remove = world.fake.remove

    def counted_remove(container: str) -> None:
        removals.append(container)
        real_remove(container)

    def deferred(container: str, then: Callable[[], None] | None = None) -> None:
        assert then is not None
        in_flight.append(then)  # still under way: the container stays listed

    monkeypatch.setattr(world.fake, "remove", counted_remove)
    monkeypatch.setattr(world.fake, "remove_soon", deferred)
    world.fake.finish(name, 0, stdout=b"hi\n")
    world.once()
    assert world.phase(task_id) == "Succeeded"
    assert len(in_flight) == 1

    world.once()  # the container is still there, its removal under way
    assert removals == []
    assert name in world.fake.names()

    in_flight.pop()()  # the removal ended without removing it (the engine refused)
    world.once()
    assert removals == [name]
    assert name not in world.fake.names()
