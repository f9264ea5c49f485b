"""Stdin for interactive tasks: the API stores it, the controller passes it to the container.

A task that does not read its stdin holds up no one (issue #14): the runtime refuses input for
it (FULL) without blocking, the pass goes on, and what waits stays in the database, where the
attach endpoint bounds it.
"""

import json
from typing import Any

from fake_world import World, name_of
from sqlmodel import col, select

from api.attach import MAX_INPUT_CHARS, MAX_WAITING_INPUT_BYTES
from controller.runtime import InputResult
from models.tables import InputChunk


def _interactive(world: World, timeout: int = 30) -> str:
    response = world.client.post(
        "/tasks",
        json={
            "task_type": "execute_code",
            "code": "print(input())",
            "interactive": True,
            "timeout_seconds": timeout,
            "resources": {"cpu": "1", "gpu": "0", "ram": "64MB", "storage": "100MB"},
        },
    )
    assert response.status_code == 201, response.text
    task: dict[str, Any] = response.json()
    assert task["spec"]["interactive"] is True
    world.once()
    assert world.phase(task["id"]) == "Running"
    return str(task["id"])


def _send(world: World, task_id: str, data: bytes, eof: bool = False) -> None:
    with world.db.write() as session:
        session.add(InputChunk(task_id=task_id, data=data, eof=eof))
        session.commit()


def test_input_reaches_the_container_in_order_once(world: World) -> None:
    task_id = _interactive(world)
    name = name_of(task_id)
    assert world.fake.containers[name].spec.interactive is True

    _send(world, task_id, b"first\n")
    _send(world, task_id, b"second\n")
    world.once()
    world.once()  # a later pass sends nothing twice
    _send(world, task_id, b"", eof=True)
    world.once()

    assert world.fake.inputs[name] == [b"first\n", b"second\n", b""]
    assert name in world.fake.closed_inputs


def test_input_after_eof_is_not_sent(world: World) -> None:
    task_id = _interactive(world)
    _send(world, task_id, b"", eof=True)
    world.once()
    _send(world, task_id, b"late\n")
    world.once()
    assert world.fake.inputs[name_of(task_id)] == [b""]


def test_non_interactive_tasks_get_no_input(world: World) -> None:
    task_id = world.submit()
    world.once()
    _send(world, task_id, b"ignored\n")
    world.once()
    assert world.fake.inputs == {}


def _waiting(world: World, task_id: str) -> list[bytes]:
    """The task's input stored and not yet passed on, oldest first."""
    with world.db.read() as session:
        return list(
            session.scalars(
                select(col(InputChunk.data))
                .where(col(InputChunk.task_id) == task_id)
                .order_by(col(InputChunk.seq))
            )
        )


def test_input_passed_on_is_deleted(world: World) -> None:
    task_id = _interactive(world)
    _send(world, task_id, b"one\n")
    _send(world, task_id, b"two\n")

    world.once()

    assert _waiting(world, task_id) == []
    _send(world, task_id, b"three\n")  # SQLite may give it a seq an earlier piece had
    world.once()
    assert world.fake.inputs[name_of(task_id)] == [b"one\n", b"two\n", b"three\n"]
    assert _waiting(world, task_id) == []


def test_a_task_that_does_not_read_holds_up_no_one(world: World) -> None:
    stalled = _interactive(world, timeout=5)
    world.fake.full_inputs.add(name_of(stalled))
    for number in range(3):
        _send(world, stalled, b"piece %d\n" % number)
    other = world.submit(timeout=30)

    world.once()

    assert world.phase(other) == "Running"  # started in the same pass
    assert name_of(stalled) not in world.fake.inputs
    assert len(_waiting(world, stalled)) == 3  # it waits in the database, where it was

    world.clock.advance(6)
    world.once_and_exit()

    status = world.status(stalled)
    assert (status["phase"], status["reason"]) == ("TimedOut", "DeadlineExceeded")
    assert world.phase(other) == "Running"


def test_refused_input_goes_first_and_once_when_the_task_reads_again(
    world: World,
) -> None:
    task_id = _interactive(world)
    name = name_of(task_id)
    world.fake.full_inputs.add(name)
    offered: list[bytes] = []
    real_send = world.fake.send_input

    def counting(name: str, data: bytes, *, eof: bool) -> InputResult:
        offered.append(data)
        return real_send(name, data, eof=eof)

    world.fake.send_input = counting  # type: ignore[method-assign]
    for number in range(3):
        _send(world, task_id, b"piece %d\n" % number)

    for _ in range(3):
        world.once()

    # Each pass offers the one refused piece again, and nothing behind it.
    assert offered == [b"piece 0\n"] * 3
    world.fake.full_inputs.discard(name)
    _send(world, task_id, b"", eof=True)
    world.once()

    assert world.fake.inputs[name] == [b"piece 0\n", b"piece 1\n", b"piece 2\n", b""]
    assert name in world.fake.closed_inputs
    assert _waiting(world, task_id) == []


def test_attach_refuses_input_while_too_much_waits(world: World) -> None:
    task_id = _interactive(world)
    world.fake.full_inputs.add(name_of(task_id))
    piece = {"type": "data", "stream": "stdin", "data": "x" * MAX_INPUT_CHARS}
    fits = MAX_WAITING_INPUT_BYTES // MAX_INPUT_CHARS

    with world.client.websocket_connect(f"ws://127.0.0.1/tasks/{task_id}/attach") as ws:
        for _ in range(fits + 1):
            ws.send_text(json.dumps(piece))
        refused = ws.receive_json()
        assert refused["type"] == "error"
        assert "not reading its stdin" in refused["message"]
        assert sum(map(len, _waiting(world, task_id))) == fits * MAX_INPUT_CHARS

        world.fake.full_inputs.clear()
        world.once()  # the task reads again: what waited is passed on and deleted
        assert _waiting(world, task_id) == []
        ws.send_text(json.dumps({"type": "data", "stream": "stdin", "data": "after\n"}))
        ws.send_text(json.dumps({"type": "eof"}))
        ws.send_text(json.dumps({"type": "eof"}))
        # Messages are handled in order: the answer to the last says the others are stored.
        assert ws.receive_json() == {"type": "error", "message": "stdin is already closed"}
    world.once()
    assert world.fake.inputs[name_of(task_id)][-2:] == [b"after\n", b""]
