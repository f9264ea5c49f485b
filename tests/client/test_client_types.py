"""The client's records against the server's response models (`models/schemas.py`), field by
field and type by type, and how a record reads: as attributes, as keys, as JSON."""

import copy
import json
import pickle
import types
import typing
from typing import Any, Union

import pytest
from pydantic import BaseModel

from models import schemas
from taskyard.client import records

# Each server response model and the client record that reads it.
PAIRS: dict[type[BaseModel], type[Any]] = {
    schemas.TaskRead: records.Task,
    schemas.TaskSpecOut: records.TaskSpec,
    schemas.ResourcesOut: records.Resources,
    schemas.TaskStatusOut: records.TaskStatus,
    schemas.Assigned: records.Assigned,
    schemas.StuckOut: records.Stuck,
    schemas.FileOut: records.File,
    schemas.CollectedFileOut: records.CollectedFile,
    schemas.UsageOut: records.Usage,
    schemas.TransitionRead: records.Transition,
    schemas.TaskList: records.Page,
    schemas.BatchCreated: records.BatchCreated,
    schemas.BatchRead: records.Batch,
}


def shape(hint: Any) -> Any:
    """A type as something comparable across the two sides: models by their client record."""
    if isinstance(hint, type) and issubclass(hint, BaseModel):
        return PAIRS[hint].__name__
    if isinstance(hint, type) and issubclass(hint, records.Record | records.Page):
        return hint.__name__
    if typing.get_origin(hint) in (Union, types.UnionType):
        return frozenset(shape(option) for option in typing.get_args(hint))
    if typing.get_origin(hint) is list:
        return ("list", shape(typing.get_args(hint)[0]))
    return hint


def server_fields(model: type[BaseModel]) -> dict[str, Any]:
    return {name: shape(field.annotation) for name, field in model.model_fields.items()}


def client_fields(record: type[Any]) -> dict[str, Any]:
    return {name: shape(hint) for name, hint in typing.get_type_hints(record).items()}


@pytest.mark.parametrize("model", list(PAIRS), ids=lambda model: model.__name__)
def test_each_record_declares_the_fields_of_its_response_model(model: type[BaseModel]) -> None:
    assert client_fields(PAIRS[model]) == server_fields(model)


def test_a_spec_holds_exactly_the_fields_a_new_task_takes() -> None:
    # The round trip: `client.submit(**task.spec)` sends what POST /tasks accepts.
    assert set(client_fields(records.TaskSpec)) == set(schemas.TaskCreate.model_fields)
    assert set(client_fields(records.Resources)) == set(schemas.ResourcesIn.model_fields)


def task_json() -> dict[str, Any]:
    """A Task as GET /tasks/{id} answers it (one the server's own model builds)."""
    return schemas.TaskRead.model_validate(
        {
            "id": "abc",
            "created_at": "2026-11-27T22:00:00Z",
            "resource_version": 4,
            "spec": {
                "task_type": "execute_code",
                "code": "print(1)",
                "resources": {"cpu": "1", "gpu": "0", "ram": "1gb", "storage": "64MB"},
                "timeout_seconds": 30,
                "stdin": None,
                "interactive": False,
                "runtime": "python-data",
                "files": [{"name": "in.csv", "content": "a,b\n", "encoding": "utf8"}],
                "args": ["--fast"],
                "env": {"MODE": "test"},
                "collect": ["*.png"],
            },
            "status": {
                "phase": "Succeeded",
                "reason": "Completed",
                "message": "exited 0",
                "result": "1\n",
                "exit_code": 0,
                "stdout": "1\n",
                "stderr": "",
                "stdout_truncated": False,
                "stderr_truncated": False,
                "files": [{"name": "plot.png", "size": 3, "content": "iVBO"}],
                "files_truncated": False,
                "usage": {"wall_seconds": 0.5, "cpu_seconds": 0.25, "peak_memory_bytes": 1024},
                "assigned": {"cpus": [3], "gpus": []},
                "attempt": 1,
                "cancel_requested": False,
                "reset_requested": None,
                "stuck": {"why": "no container", "since": None},
                "scheduled_at": None,
                "started_at": None,
                "finished_at": None,
                "deadline_at": None,
            },
        }
    ).model_dump(mode="json")


def test_fields_read_as_attributes_and_as_keys_at_every_depth() -> None:
    task = records.Task(task_json())

    assert task.status.stdout == task["status"]["stdout"] == "1\n"
    assert task.spec.resources.ram == task["spec"]["resources"]["ram"] == "1gb"
    assert task.status.assigned.cpus == [3]
    assert task.status.stuck is not None and task.status.stuck.why == "no container"
    assert task.spec.files[0].name == "in.csv" and task.spec.env["MODE"] == "test"
    assert task.status.files[0].data == b"\x89PN"
    assert task.status.usage is not None and task.status.usage.cpu_seconds == 0.25
    assert isinstance(task.spec.resources, records.Resources)
    assert isinstance(task.status.stuck, records.Stuck)
    assert task.done
    with pytest.raises(AttributeError, match="no field 'nope'"):
        _ = task.status.nope


def test_a_record_is_the_json_it_came_from() -> None:
    original = task_json()
    task = records.Task(original)

    assert task == original
    assert json.loads(json.dumps(task)) == original
    assert pickle.loads(pickle.dumps(task)) == task
    assert copy.deepcopy(task).status.stdout == "1\n"
    assert repr(records.Resources(cpu="1")) == "Resources({'cpu': '1'})"


def test_fields_the_server_adds_later_are_kept_and_readable() -> None:
    original = task_json()
    original["status"]["usage"] = {"wall_seconds": 0.5, "peak_memory_bytes": 1024}
    original["status"]["files"] = [{"name": "out.txt", "size": 3, "content": "aGkK"}]

    task = records.Task(original)

    assert task.status.usage.wall_seconds == 0.5
    assert task.status.files[0].name == "out.txt"
    assert task == original
