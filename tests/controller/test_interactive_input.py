"""Stdin for interactive tasks: the API stores it, the controller passes it to the container."""

from typing import Any

from test_reconciler_fake import World, name_of, world  # noqa: F401  (the fixture)

from models.tables import InputChunk


def _interactive(world: World) -> str:  # noqa: F811
    response = world.client.post("/tasks", json={
        "task_type": "execute_code", "code": "print(input())", "interactive": True,
        "resources": {"cpu": "1", "gpu": "0", "ram": "64MB", "storage": "100MB"},
    })
    assert response.status_code == 201, response.text
    task: dict[str, Any] = response.json()
    assert task["spec"]["interactive"] is True
    world.once()
    assert world.phase(task["id"]) == "Running"
    return str(task["id"])


def _send(world: World, task_id: str, data: bytes, eof: bool = False) -> None:  # noqa: F811
    with world.db.write() as session:
        session.add(InputChunk(task_id=task_id, data=data, eof=eof))
        session.commit()


def test_input_reaches_the_container_in_order_once(world: World) -> None:  # noqa: F811
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


def test_input_after_eof_is_not_sent(world: World) -> None:  # noqa: F811
    task_id = _interactive(world)
    _send(world, task_id, b"", eof=True)
    world.once()
    _send(world, task_id, b"late\n")
    world.once()
    assert world.fake.inputs[name_of(task_id)] == [b""]


def test_non_interactive_tasks_get_no_input(world: World) -> None:  # noqa: F811
    task_id = world.submit()
    world.once()
    _send(world, task_id, b"ignored\n")
    world.once()
    assert world.fake.inputs == {}
