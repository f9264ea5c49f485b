"""The controller's side of admin resets and stuck tasks, against the in-memory fake runtime
over a real SQLite file, with requests made through the real API app.

A reset is requested with `POST /admin/tasks/{id}/reset` and carried out by a reconcile pass:
the container is killed and removed, the slots are freed, and the task moves with an
`AdminReset` transition. Stuck tasks are recorded by the controller (`status.stuck`) and listed
by `GET /admin/tasks/stuck`. The grace for stuck tasks is 5 s here, a Pending task counts as
stuck after 60 s while the engine is down, and the test moves the controller's clock by hand.
"""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_world import HOST, OWNER, Clock, World, name_of, running
from fastapi.testclient import TestClient
from sqlmodel import select

import controller.observe
import controller.plan
from api.app import create_app
from controller.errors import RuntimeUnavailable
from controller.fake_runtime import FakeRuntime
from controller.loop import Reconciler
from controller.scheduling import Plan
from models.database import open_database
from models.settings import Settings
from models.tables import Capacity, Transition

GRACE = 5
SCHEDULED_WHY = f"scheduled more than {GRACE} s ago, but its container has not started"
OVERDUE_WHY = (
    f"still running more than {GRACE} s past its deadline: its container could not be stopped"
)
ENGINE_WHY = "the container engine is unavailable, so its container cannot be observed"


@pytest.fixture
def world(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    monkeypatch.setattr(controller.observe, "discover_capacity", lambda *_a, **_k: HOST)
    settings = Settings(
        data_dir=tmp_path,
        stuck_grace_seconds=GRACE,
        pending_stuck_seconds=60,
        # The fake engine has no supervisor that ends a code at its timeout: the controller's
        # kill at the deadline does.
        supervisor_deadline_grace_seconds=0,
    )
    db = open_database(database_url)
    fake = FakeRuntime()
    clock = Clock()
    reconciler = Reconciler(
        settings, db, fake, owner=OWNER, gpu_probe=lambda: ([], "no gpus"), clock=clock
    )
    with TestClient(create_app(settings, db), base_url="http://127.0.0.1") as client:
        yield World(settings, db, client, fake, clock, reconciler)
    db.dispose()


def admin(world: World) -> dict[str, str]:
    token: str = world.client.app.state.admin_token  # type: ignore[attr-defined]
    return {"Authorization": f"Bearer {token}"}


def reset(world: World, task_id: str, to: str) -> dict[str, Any]:
    response = world.client.post(
        f"/admin/tasks/{task_id}/reset", json={"to": to}, headers=admin(world)
    )
    assert response.status_code == 200, response.text
    task: dict[str, Any] = response.json()
    assert task["status"]["reset_requested"] == to
    return task


def stuck_list(world: World) -> dict[str, dict[str, Any]]:
    response = world.client.get("/admin/tasks/stuck", headers=admin(world))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["controller"]["ok"] is True
    return {item["task_id"]: item for item in body["items"]}


def phases(world: World, task_id: str) -> list[tuple[str | None, str, str]]:
    return [(e["from_phase"], e["to_phase"], e["reason"]) for e in world.events(task_id)]


def allocated_cpus(world: World) -> list[int]:
    with world.db.read() as session:
        row = session.get(Capacity, "local")
        assert row is not None
        return list(row.allocated_cpus)


def record_calls(world: World, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Record the engine calls that stop and remove containers, in order."""
    calls: list[tuple[str, str]] = []
    for method in ("kill", "remove"):
        real = getattr(world.fake, method)

        def spy(name: str, _real: Any = real, _method: str = method) -> Any:
            calls.append((_method, name))
            return _real(name)

        monkeypatch.setattr(world.fake, method, spy)
    return calls


def once_without_scheduling(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """One pass that places nothing, to see a requeued task as it waits in the queue."""
    with monkeypatch.context() as patch:
        patch.setattr(controller.plan, "place", lambda *_a, **_k: Plan())
        world.once()


def scheduled_but_not_started(world: World, cpu: str = "1") -> str:
    task_id = world.submit(cpu)
    world.fake.fail_next_run = RuntimeUnavailable("engine hiccup")
    world.once()
    assert world.phase(task_id) == "Scheduled"
    assert name_of(task_id) not in world.fake.names()
    return task_id


# --- reset ------------------------------------------------------------------------------------


def test_requeue_of_a_running_task_kills_removes_and_frees(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    task_id = running(world, "2")
    first = name_of(task_id, 1)
    calls = record_calls(world, monkeypatch)
    reset(world, task_id, "Pending")

    once_without_scheduling(world, monkeypatch)  # sends SIGKILL
    once_without_scheduling(world, monkeypatch)  # woken by the exit: resets

    status = world.status(task_id)
    assert status["phase"] == "Pending"
    assert status["reason"] == "AdminReset"
    assert status["message"] == "requeued by an admin as attempt 2"
    assert status["attempt"] == 2
    assert status["assigned"] == {"cpus": [], "gpus": []}
    assert status["reset_requested"] is None
    assert status["started_at"] is None and status["deadline_at"] is None
    assert status["finished_at"] is None and status["result"] is None
    assert calls[:2] == [("kill", first), ("remove", first)]
    assert first not in world.fake.names()
    assert allocated_cpus(world) == []
    last = world.events(task_id)[-1]
    assert (last["from_phase"], last["to_phase"], last["reason"]) == (
        "Running",
        "Pending",
        "AdminReset",
    )
    assert last["resource_version"] == world.task(task_id)["resource_version"]


def test_a_requeued_task_runs_again_as_the_next_attempt(world: World) -> None:
    task_id = running(world)
    reset(world, task_id, "Pending")

    world.once_and_exit()

    status = world.status(task_id)
    assert status["phase"] == "Running"
    assert status["attempt"] == 2
    assert world.fake.runs == [name_of(task_id, 1), name_of(task_id, 2)]
    assert world.fake.names() == {name_of(task_id, 2)}
    assert world.fake.containers[name_of(task_id, 2)].spec.labels["taskyard.attempt"] == "2"

    world.fake.finish(name_of(task_id, 2), 0, stdout=b"second\n")
    world.once()

    status = world.status(task_id)
    assert (status["phase"], status["result"], status["attempt"]) == ("Succeeded", "second\n", 2)
    assert phases(world, task_id) == [
        (None, "Pending", "Created"),
        ("Pending", "Scheduled", "Scheduled"),
        ("Scheduled", "Running", "Started"),
        ("Running", "Pending", "AdminReset"),
        ("Pending", "Scheduled", "Scheduled"),
        ("Scheduled", "Running", "Started"),
        ("Running", "Succeeded", "Completed"),
    ]


def test_failing_a_running_task_keeps_its_partial_output(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    task_id = running(world)
    name = name_of(task_id)
    world.fake.containers[name].stdout = b"partial\n"
    world.fake.containers[name].stderr = b"warming up\n"
    calls = record_calls(world, monkeypatch)
    reset(world, task_id, "Failed")

    world.once_and_exit()

    status = world.status(task_id)
    assert status["phase"] == "Failed"
    assert status["reason"] == "AdminReset"
    assert status["result"] == "failed by an admin"
    assert status["stdout"] == "partial\n"
    assert status["stderr"] == "warming up\n"
    assert status["finished_at"] is not None
    assert status["attempt"] == 1
    assert status["reset_requested"] is None
    assert calls[:2] == [("kill", name), ("remove", name)]
    assert world.fake.names() == set()
    assert allocated_cpus(world) == []
    assert phases(world, task_id)[-1] == ("Running", "Failed", "AdminReset")

    world.once()
    world.once()
    assert world.phase(task_id) == "Failed"
    assert world.fake.runs == [name]


def test_requeue_of_a_succeeded_task_runs_it_again(world: World) -> None:
    task_id = running(world)
    world.fake.finish(name_of(task_id), 0, stdout=b"first\n")
    world.once()
    assert world.status(task_id)["result"] == "first\n"
    reset(world, task_id, "Pending")

    world.once()

    status = world.status(task_id)
    assert (status["phase"], status["attempt"]) == ("Running", 2)
    assert status["result"] is None and status["exit_code"] is None
    assert status["stdout"] is None
    assert world.fake.runs == [name_of(task_id, 1), name_of(task_id, 2)]

    world.fake.finish(name_of(task_id, 2), 0, stdout=b"again\n")
    world.once()
    assert world.status(task_id)["result"] == "again\n"
    assert ("Succeeded", "Pending", "AdminReset") in phases(world, task_id)


def test_failing_a_pending_task_never_runs_it(world: World) -> None:
    running(world, "2")
    waiting = world.submit("2")
    world.once()
    assert world.status(waiting)["reason"] == "Unschedulable"
    reset(world, waiting, "Failed")

    world.once()

    status = world.status(waiting)
    assert (status["phase"], status["reason"]) == ("Failed", "AdminReset")
    assert phases(world, waiting)[-1] == ("Pending", "Failed", "AdminReset")
    assert name_of(waiting) not in world.fake.runs


def test_requeue_of_a_scheduled_task_whose_start_failed(world: World) -> None:
    task_id = scheduled_but_not_started(world)
    reset(world, task_id, "Pending")

    world.once()

    status = world.status(task_id)
    assert (status["phase"], status["attempt"]) == ("Running", 2)
    assert world.fake.runs == [name_of(task_id, 2)]
    assert ("Scheduled", "Pending", "AdminReset") in phases(world, task_id)


def test_failing_a_task_frees_its_slots_for_the_next_one(world: World) -> None:
    hog = running(world, "2")
    waiting = world.submit("2")
    world.once()
    assert world.phase(waiting) == "Pending"
    reset(world, hog, "Failed")

    world.once_and_exit()

    assert world.phase(hog) == "Failed"
    status = world.status(waiting)
    assert status["phase"] == "Running"
    assert sorted(status["assigned"]["cpus"]) == [0, 1]
    assert sorted(allocated_cpus(world)) == [0, 1]


def test_the_same_reset_after_it_was_carried_out_changes_nothing(world: World) -> None:
    task_id = running(world)
    reset(world, task_id, "Failed")
    world.once_and_exit()
    before = world.task(task_id)
    transitions = world.transition_count()

    again = world.client.post(
        f"/admin/tasks/{task_id}/reset", json={"to": "Failed"}, headers=admin(world)
    )
    world.once()

    assert again.status_code == 200
    assert again.json() == before
    assert world.task(task_id) == before
    assert world.transition_count() == transitions


def test_a_reset_waits_while_the_engine_is_down(world: World) -> None:
    task_id = running(world)
    world.fake.available = False
    reset(world, task_id, "Failed")

    world.once()
    world.once()

    status = world.status(task_id)
    assert (status["phase"], status["reset_requested"]) == ("Running", "Failed")
    assert name_of(task_id) in world.fake.names()

    world.fake.available = True
    world.once_and_exit()

    assert (world.phase(task_id), world.status(task_id)["reason"]) == ("Failed", "AdminReset")
    assert world.fake.names() == set()


def test_a_reset_whose_kill_fails_is_retried(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    task_id = running(world)
    real_kill = world.fake.kill
    attempts: list[str] = []

    def kill_once_unreachable(name: str) -> Any:
        attempts.append(name)
        if len(attempts) == 1:
            raise RuntimeUnavailable("engine restarting")
        return real_kill(name)

    monkeypatch.setattr(world.fake, "kill", kill_once_unreachable)
    reset(world, task_id, "Pending")

    world.once()
    assert world.status(task_id)["attempt"] == 1
    assert world.status(task_id)["reset_requested"] == "Pending"

    world.once_and_exit()
    status = world.status(task_id)
    assert (status["phase"], status["attempt"], status["reset_requested"]) == ("Running", 2, None)
    assert world.fake.names() == {name_of(task_id, 2)}


# --- stuck ------------------------------------------------------------------------------------


def test_a_scheduled_task_that_never_starts_is_stuck_after_the_grace(world: World) -> None:
    task_id = scheduled_but_not_started(world)
    for _ in range(2):
        world.clock.advance(2)
        world.fake.fail_next_run = RuntimeUnavailable("engine hiccup")
        world.once()
        assert world.status(task_id)["stuck"] is None
    assert stuck_list(world) == {}

    world.clock.advance(2)
    world.fake.fail_next_run = RuntimeUnavailable("engine hiccup")
    world.once()

    status = world.status(task_id)
    assert status["phase"] == "Scheduled"
    assert status["stuck"] is not None
    assert status["stuck"]["why"] == SCHEDULED_WHY
    listed = stuck_list(world)
    assert set(listed) == {task_id}
    assert listed[task_id]["phase"] == "Scheduled"
    assert listed[task_id]["why"] == SCHEDULED_WHY
    assert listed[task_id]["since"] == status["stuck"]["since"]
    assert world.fake.runs == []


def test_a_stuck_record_is_written_once(world: World) -> None:
    task_id = scheduled_but_not_started(world)
    world.clock.advance(GRACE + 1)
    world.fake.fail_next_run = RuntimeUnavailable("engine hiccup")
    world.once()
    stuck = world.task(task_id)
    assert stuck["status"]["stuck"]["why"] == SCHEDULED_WHY

    for _ in range(5):
        world.clock.advance(10)
        world.fake.fail_next_run = RuntimeUnavailable("engine hiccup")
        world.once()

    again = world.task(task_id)
    assert again["resource_version"] == stuck["resource_version"]
    assert again["status"]["stuck"] == stuck["status"]["stuck"]


def test_stuck_is_cleared_once_a_scheduled_task_starts(world: World) -> None:
    task_id = scheduled_but_not_started(world)
    world.clock.advance(GRACE + 1)
    world.fake.fail_next_run = RuntimeUnavailable("engine hiccup")
    world.once()
    assert world.status(task_id)["stuck"] is not None

    world.once()

    status = world.status(task_id)
    assert status["phase"] == "Running"
    assert status["stuck"] is None
    assert stuck_list(world) == {}


def test_a_running_task_whose_kill_keeps_failing_is_stuck(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    task_id = running(world, timeout=5)

    def unreachable(name: str) -> Any:
        raise RuntimeUnavailable("engine cannot kill " + name)

    monkeypatch.setattr(world.fake, "kill", unreachable)
    world.clock.advance(6)
    world.once()
    assert world.phase(task_id) == "Running"
    assert world.status(task_id)["stuck"] is None

    world.clock.advance(GRACE)
    world.once()

    status = world.status(task_id)
    assert status["phase"] == "Running"
    assert status["stuck"]["why"] == OVERDUE_WHY
    assert stuck_list(world)[task_id]["why"] == OVERDUE_WHY


def test_stuck_is_cleared_once_an_overdue_task_finally_stops(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    task_id = running(world, timeout=5)

    def unreachable(name: str) -> Any:
        raise RuntimeUnavailable("engine cannot kill " + name)

    with monkeypatch.context() as patch:
        patch.setattr(world.fake, "kill", unreachable)
        world.clock.advance(5 + GRACE + 1)
        world.once()
        assert world.status(task_id)["stuck"]["why"] == OVERDUE_WHY

    world.once_and_exit()

    status = world.status(task_id)
    assert status["phase"] == "TimedOut"
    assert stuck_list(world) == {}
    # The task moved: its record no longer says it is stuck.
    assert status["stuck"] is None


def test_engine_down_marks_scheduled_and_running_tasks_stuck(world: World) -> None:
    busy = running(world)
    scheduled = scheduled_but_not_started(world)
    waiting = world.submit("2")
    world.fake.available = False

    world.once()

    listed = stuck_list(world)
    assert set(listed) == {busy, scheduled}
    assert listed[busy]["why"] == ENGINE_WHY
    assert listed[scheduled]["why"] == ENGINE_WHY
    assert world.status(waiting)["stuck"] is None
    versions = {t: world.task(t)["resource_version"] for t in (busy, scheduled)}

    world.once()
    world.once()
    assert {t: world.task(t)["resource_version"] for t in (busy, scheduled)} == versions

    world.fake.available = True
    world.once()

    assert stuck_list(world) == {}
    assert world.phase(busy) == "Running" and world.status(busy)["stuck"] is None
    assert world.phase(scheduled) == "Running" and world.status(scheduled)["stuck"] is None


def test_engine_down_a_pending_task_is_stuck_after_the_pending_threshold(world: World) -> None:
    task_id = world.submit()
    world.fake.available = False
    world.once()
    assert stuck_list(world) == {}

    world.clock.advance(61)
    world.once()

    assert stuck_list(world)[task_id]["why"] == "pending while the container engine is unavailable"
    assert world.status(task_id)["reason"] == "RuntimeUnavailable"


def test_a_reset_clears_the_stuck_record(world: World) -> None:
    task_id = scheduled_but_not_started(world)
    world.clock.advance(GRACE + 1)
    world.fake.fail_next_run = RuntimeUnavailable("engine hiccup")
    world.once()
    assert task_id in stuck_list(world)
    reset(world, task_id, "Failed")

    world.once()

    status = world.status(task_id)
    assert (status["phase"], status["reason"]) == ("Failed", "AdminReset")
    assert status["stuck"] is None
    assert stuck_list(world) == {}


def test_recording_a_stuck_task_adds_no_transition(world: World) -> None:
    """Recording stuck is a status change, not a phase change: no transition is added."""
    task_id = scheduled_but_not_started(world)
    with world.db.read() as session:
        before = [t.seq for t in session.exec(select(Transition))]
    world.clock.advance(GRACE + 1)
    world.fake.fail_next_run = RuntimeUnavailable("engine hiccup")
    world.once()

    with world.db.read() as session:
        after = [t.seq for t in session.exec(select(Transition))]
    assert after == before
    assert task_id in stuck_list(world)


def test_a_task_that_ended_during_an_engine_outage_is_no_longer_stuck(world: World) -> None:
    task_id = running(world)
    world.fake.available = False
    world.once()
    assert world.status(task_id)["stuck"]["why"] == ENGINE_WHY

    world.fake.finish(name_of(task_id), 0, stdout=b"done\n")
    world.fake.available = True
    world.once()

    status = world.status(task_id)
    assert (status["phase"], status["result"]) == ("Succeeded", "done\n")
    assert stuck_list(world) == {}
    assert status["stuck"] is None
