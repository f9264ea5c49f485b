"""What the client returns: the server's JSON objects as records, whose fields are both keys
and attributes (`task["status"]["stdout"]` is `task.status.stdout`).

A `Record` is a `dict`, so it prints, compares and `json.dumps` as the JSON it came from, and a
field the server adds later is kept and reachable too. The classes below declare the fields of
the REST contract for type checkers; `tests/client/test_client_types.py` holds them to the
server's response models in `models/schemas.py`, field by field.
"""

import base64
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, Union

TERMINAL_PHASES = frozenset({"Succeeded", "Failed", "TimedOut", "Cancelled"})


class Record(dict[str, Any]):
    """A JSON object whose keys are also attributes; nested objects become records too (of the
    class a field declares, else plain `Record`)."""

    def __init__(self, data: Mapping[str, Any] | None = None, /, **fields: Any) -> None:
        super().__init__()
        kinds = _field_kinds(type(self))
        for key, value in {**(data or {}), **fields}.items():
            self[key] = _convert(value, kinds.get(key))

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"{type(self).__name__} has no field {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __delattr__(self, name: str) -> None:
        try:
            del self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({dict.__repr__(self)})"


class Resources(Record):
    """As the request wrote them: `{"cpu": "2", "gpu": "0", "ram": "512MB", "storage": "1GB"}`."""

    cpu: str
    gpu: str
    ram: str
    storage: str


class File(Record):
    """A file a task brings: `encoding` is "utf8" or "base64"."""

    name: str
    content: str
    encoding: str


class CollectedFile(Record):
    """A file collected after the run; `data` is its content decoded from base64."""

    name: str
    size: int
    content: str

    @property
    def data(self) -> bytes:
        return base64.b64decode(self.content)


class Usage(Record):
    """What the run cost, as its container's cgroup counted it."""

    wall_seconds: float
    cpu_seconds: float
    peak_memory_bytes: int


class TaskSpec(Record):
    """What was asked for. Sent back (`client.submit(**task.spec)`) it makes the same task."""

    task_type: str
    code: str
    resources: Resources
    timeout_seconds: int
    stdin: str | None
    interactive: bool
    runtime: str
    files: list[File]
    args: list[str]
    env: dict[str, str]
    collect: list[str]


class Assigned(Record):
    cpus: list[int]
    gpus: list[int]


class Stuck(Record):
    why: str
    since: str | None


class TaskStatus(Record):
    """What happened, written by the controller."""

    phase: str
    reason: str
    message: str
    result: str | None
    exit_code: int | None
    stdout: str | None
    stderr: str | None
    stdout_truncated: bool
    stderr_truncated: bool
    files: list[CollectedFile]
    files_truncated: bool
    usage: Usage | None
    assigned: Assigned
    attempt: int
    cancel_requested: bool
    reset_requested: str | None
    stuck: Stuck | None
    scheduled_at: str | None
    started_at: str | None
    finished_at: str | None
    deadline_at: str | None


class Task(Record):
    id: str
    created_at: str
    resource_version: int
    batch_id: str | None
    spec: TaskSpec
    status: TaskStatus

    @property
    def done(self) -> bool:
        """Whether the task is in a terminal phase: Succeeded, Failed, TimedOut or Cancelled."""
        return bool(self["status"]["phase"] in TERMINAL_PHASES)


class BatchCreated(Record):
    """The answer to a batch submission: the batch's id, its tasks' ids in the order sent."""

    id: str
    task_ids: list[str]
    count: int


class Batch(Record):
    """Where a batch stands: its tasks counted by phase (every phase named), how many are
    done, how many have a cancellation request."""

    id: str
    created_at: str
    count: int
    done: int
    phases: dict[str, int]
    cancel_requested: int

    @property
    def finished(self) -> bool:
        """Whether every task of the batch has ended."""
        return bool(self["done"] == self["count"])


class Transition(Record):
    """One phase change, from GET /tasks/{id}/events or GET /watch."""

    seq: int
    task_id: str
    from_phase: str | None
    to_phase: str
    reason: str
    message: str
    at: str
    resource_version: int


class OutputChunk(Record):
    """A piece of a task's output from GET /tasks/{id}/logs; `seq` is None for output sent
    from the task's final record (its live chunks were compacted away)."""

    seq: int | None
    stream: str
    text: str
    at: str | None


class LogEnd(Record):
    """The end of a task's log stream: how the task ended."""

    phase: str
    reason: str
    exit_code: int | None
    stdout_truncated: bool
    stderr_truncated: bool


@dataclass(frozen=True)
class Page:
    """One page of GET /tasks, newest first; `next_cursor` asks for the next (None: the last)."""

    items: list[Task]
    next_cursor: str | None


def _convert(value: Any, hint: Any) -> Any:
    if isinstance(value, dict):
        kind = _record_class(hint) or Record
        return value if type(value) is kind else kind(value)
    if isinstance(value, list):
        item = typing.get_args(hint)[0] if typing.get_origin(hint) is list else None
        return [_convert(entry, item) for entry in value]
    return value


def _record_class(hint: Any) -> type[Record] | None:
    if isinstance(hint, type) and issubclass(hint, Record):
        return hint
    if typing.get_origin(hint) in (Union, types.UnionType):
        for option in typing.get_args(hint):
            if isinstance(option, type) and issubclass(option, Record):
                return option
    return None


@cache
def _field_kinds(kind: type[Record]) -> dict[str, Any]:
    return typing.get_type_hints(kind) if kind is not Record else {}
