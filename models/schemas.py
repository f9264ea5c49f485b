"""Request and response shapes of the REST contract (`docs/api.md`).

`TaskCreate` keeps the seed's request shape and validation rules (never looser); `TaskRead` is
the Task object clients see, built from a `tables.Task` row by `TaskRead.from_row` (its shape
is `task_document`).
"""

import base64
import binascii
import re
from collections.abc import Callable
from enum import StrEnum
from functools import partial
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)

from models.clock import isoformat_z
from models.quantities import parse_count, parse_size
from models.runtimes import BY_NAME, DEFAULT_RUNTIME, RUNTIMES, find_runtime
from models.tables import Task, Transition


class TaskType(StrEnum):
    execute_code = "execute_code"


def _require_utf8(value: str, what: str) -> str:
    # JSON may carry lone UTF-16 surrogates ("\ud800"); they cannot be stored or run.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"{what} contains a character that is not valid Unicode text "
            f"(a lone surrogate at position {exc.start})"
        ) from None
    return value


class ResourcesIn(BaseModel):
    """The seed's ResourceType: counts and sizes as strings, validated by their format."""

    model_config = ConfigDict(extra="forbid")

    # The formats are checked by the validators below (with their own messages); the patterns
    # only tell them to readers of the OpenAPI document.
    cpu: StrictStr = Field(json_schema_extra={"pattern": "^[0-9]+$"})
    gpu: StrictStr = Field(json_schema_extra={"pattern": "^[0-9]+$"})
    ram: StrictStr = Field(json_schema_extra={"pattern": "^[0-9]+([Mm][Bb]|[Gg][Bb])$"})
    storage: StrictStr = Field(json_schema_extra={"pattern": "^[0-9]+([Mm][Bb]|[Gg][Bb])$"})

    @field_validator("cpu", "gpu")
    @classmethod
    def _count(cls, value: str) -> str:
        parse_count(value)
        return value

    @field_validator("ram", "storage")
    @classmethod
    def _size(cls, value: str) -> str:
        # Kept as written ("1gb" stays "1gb"): a task's spec is sent back as it came.
        parse_size(value)
        return value

    @property
    def cpu_count(self) -> int:
        return parse_count(self.cpu)

    @property
    def gpu_count(self) -> int:
        return parse_count(self.gpu)

    @property
    def ram_bytes(self) -> int:
        return parse_size(self.ram)

    @property
    def storage_bytes(self) -> int:
        return parse_size(self.storage)


# Bounds of what a task may bring beside its code. Their total size is a setting
# (`max_files_bytes`), checked at admission.
MAX_FILES = 100
MAX_NAME_CHARS = 255
MAX_NAME_DEPTH = 16
MAX_ARGS = 256
MAX_ARG_CHARS = 4096
MAX_ENV = 64
MAX_ENV_NAME_CHARS = 128
MAX_ENV_VALUE_CHARS = 4096
MAX_COLLECT = 16
ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*\Z")
# The sandbox's own variables: a task's env cannot override them (see docs/api.md).
RESERVED_ENV = frozenset(
    {"HOME", "TMPDIR", "PATH", "LANG", "PYTHONIOENCODING", "PYTHONUNBUFFERED"}
    | {"PYTHONDONTWRITEBYTECODE", "MPLBACKEND", "MPLCONFIGDIR"}
)


def check_relative_path(value: str, what: str) -> str:
    """A name under the work area: relative, no "." or ".." part, no control character."""
    if not value or len(value) > MAX_NAME_CHARS:
        raise ValueError(f"{what} must be 1 to {MAX_NAME_CHARS} characters long")
    if any(ord(char) < 32 or ord(char) == 127 for char in value):
        raise ValueError(f"{what} {value!r} contains a control character")
    if value.startswith("/"):
        raise ValueError(f"{what} {value!r} is absolute; give a path under the work directory")
    if "\\" in value:
        raise ValueError(f"{what} {value!r} contains a backslash; separate directories with /")
    parts = value.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"{what} {value!r} has an empty, '.' or '..' part")
    if len(parts) > MAX_NAME_DEPTH:
        raise ValueError(f"{what} {value!r} is more than {MAX_NAME_DEPTH} directories deep")
    return _require_utf8(value, what)


class FileIn(BaseModel):
    """A file written under the work directory before the run."""

    model_config = ConfigDict(extra="forbid")

    name: StrictStr
    content: StrictStr
    encoding: Literal["utf8", "base64"] = "utf8"

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        return check_relative_path(value, "name")

    @field_validator("content")
    @classmethod
    def _content_is_text(cls, value: str) -> str:
        return _require_utf8(value, "content")

    @model_validator(mode="after")
    def _decodes(self) -> "FileIn":
        if self.encoding == "base64":
            try:
                base64.b64decode(self.content, validate=True)
            except (binascii.Error, ValueError):
                raise ValueError(f"content of {self.name!r} is not valid base64") from None
        return self

    @property
    def data(self) -> bytes:
        if self.encoding == "base64":
            return base64.b64decode(self.content, validate=True)
        return self.content.encode("utf-8")


class TaskCreate(BaseModel):
    """The body of POST /tasks: the seed's RequestDTO plus `timeout_seconds`, `stdin`,
    `interactive`, and what a task may bring beside its code (`runtime`, `files`, `args`,
    `env`, `collect`)."""

    model_config = ConfigDict(extra="forbid")

    task_type: TaskType
    code: StrictStr
    resources: ResourcesIn
    timeout_seconds: StrictInt | None = None
    stdin: StrictStr | None = None
    interactive: StrictBool = False
    runtime: StrictStr = DEFAULT_RUNTIME
    files: list[FileIn] = Field(default_factory=list, max_length=MAX_FILES)
    args: list[StrictStr] = Field(default_factory=list, max_length=MAX_ARGS)
    env: dict[StrictStr, StrictStr] = Field(default_factory=dict, max_length=MAX_ENV)
    collect: list[StrictStr] = Field(default_factory=list, max_length=MAX_COLLECT)

    @field_validator("runtime")
    @classmethod
    def _known_runtime(cls, value: str) -> str:
        runtime = find_runtime(value)
        if runtime is None:
            known = ", ".join(runtime.name for runtime in RUNTIMES)
            raise ValueError(f"unknown runtime {value!r}; the runtimes are: {known}")
        return runtime.name  # stored by its name: "py" and "python3" are "python"

    @field_validator("args")
    @classmethod
    def _args(cls, value: list[str]) -> list[str]:
        for index, arg in enumerate(value):
            if len(arg) > MAX_ARG_CHARS or "\x00" in arg:
                raise ValueError(
                    f"args[{index}] must be at most {MAX_ARG_CHARS} characters, without NUL"
                )
            _require_utf8(arg, f"args[{index}]")
        return value

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if len(name) > MAX_ENV_NAME_CHARS or not ENV_NAME.match(name):
                raise ValueError(
                    f"env name {name!r} must match [A-Z_][A-Z0-9_]* "
                    f"(at most {MAX_ENV_NAME_CHARS} characters)"
                )
            if name in RESERVED_ENV:
                raise ValueError(f"env name {name!r} is the sandbox's own and cannot be set")
            if len(text) > MAX_ENV_VALUE_CHARS or "\x00" in text:
                raise ValueError(
                    f"env {name} must be at most {MAX_ENV_VALUE_CHARS} characters, without NUL"
                )
            _require_utf8(text, f"env {name}")
        return value

    @field_validator("collect")
    @classmethod
    def _collect(cls, value: list[str]) -> list[str]:
        return [check_relative_path(glob, f"collect[{index}]") for index, glob in enumerate(value)]

    @model_validator(mode="after")
    def _files_apart(self) -> "TaskCreate":
        runtime = BY_NAME[self.runtime]
        names = [file.name for file in self.files]
        for index, name in enumerate(names):
            if name == runtime.main_file:
                raise ValueError(
                    f"files[{index}].name {name!r} is where the code goes "
                    f"in the {runtime.name} runtime; choose another name"
                )
            if name in names[:index]:
                raise ValueError(f"files[{index}].name {name!r} is given twice")
            if any(
                other.startswith(name + "/") or name.startswith(other + "/")
                for other in names[:index]
            ):
                raise ValueError(f"files[{index}].name {name!r} is both a file and a directory")
        return self

    @field_validator("code")
    @classmethod
    def _code_is_text(cls, value: str) -> str:
        return _require_utf8(value, "code")

    @field_validator("stdin")
    @classmethod
    def _stdin_is_text(cls, value: str | None) -> str | None:
        return None if value is None else _require_utf8(value, "stdin")


class ResourcesOut(BaseModel):
    """The resources as the request gave them: a spec sent back is accepted again."""

    cpu: str
    gpu: str
    ram: str
    storage: str


class FileOut(BaseModel):
    """A file of the spec, as it was given."""

    name: str
    content: str
    encoding: str  # "utf8" or "base64"


class TaskSpecOut(BaseModel):
    task_type: str
    code: str
    resources: ResourcesOut
    timeout_seconds: int
    stdin: str | None
    interactive: bool
    runtime: str
    files: list[FileOut]
    args: list[str]
    env: dict[str, str]
    collect: list[str]


class CollectedFileOut(BaseModel):
    """A file collected after the run; `content` is base64."""

    name: str
    size: int
    content: str


class UsageOut(BaseModel):
    """What the run cost, as its container's cgroup counted it."""

    wall_seconds: float
    cpu_seconds: float
    peak_memory_bytes: int


class Assigned(BaseModel):
    cpus: list[int]
    gpus: list[int]


class StuckOut(BaseModel):
    why: str
    since: str | None


class TaskStatusOut(BaseModel):
    phase: str
    reason: str
    message: str
    result: str | None
    exit_code: int | None
    stdout: str | None
    stderr: str | None
    stdout_truncated: bool
    stderr_truncated: bool
    files: list[CollectedFileOut]
    files_truncated: bool
    usage: UsageOut | None
    assigned: Assigned
    attempt: int
    cancel_requested: bool
    reset_requested: str | None
    stuck: "StuckOut | None"
    scheduled_at: str | None
    started_at: str | None
    finished_at: str | None
    deadline_at: str | None


class TaskRead(BaseModel):
    """The Task object of the contract. `batch_id` names the batch it was submitted in
    (POST /batches), null for a task submitted alone: neither spec nor status, like `id`."""

    id: str
    created_at: str
    resource_version: int
    batch_id: str | None = None
    spec: TaskSpecOut
    status: TaskStatusOut

    @classmethod
    def from_row(cls, task: Task) -> "TaskRead":
        return cls.model_validate(task_document(partial(getattr, task)))


def task_document(value_of: Callable[[str], Any]) -> dict[str, Any]:
    """The Task object of the contract as plain JSON values, from a task's column values:
    `value_of(column)` reads them from a `tables.Task` row (`TaskRead.from_row`), or from the
    values of a row being inserted (POST /tasks answers with these without building a row).
    """
    stuck_reason = value_of("stuck_reason")
    return {
        "id": value_of("id"),
        "created_at": isoformat_z(value_of("created_at")) or "",
        "resource_version": value_of("resource_version"),
        "batch_id": value_of("batch_id"),
        "spec": {
            "task_type": value_of("task_type"),
            "code": value_of("code"),
            "resources": {
                "cpu": value_of("cpu_text"),
                "gpu": value_of("gpu_text"),
                "ram": value_of("ram"),
                "storage": value_of("storage"),
            },
            "timeout_seconds": value_of("timeout_seconds"),
            "stdin": value_of("stdin"),
            "interactive": value_of("interactive"),
            "runtime": value_of("runtime"),
            "files": value_of("files"),
            "args": value_of("args"),
            "env": value_of("env"),
            "collect": value_of("collect"),
        },
        "status": {
            "phase": value_of("phase"),
            "reason": value_of("reason"),
            "message": value_of("message"),
            "result": value_of("result"),
            "exit_code": value_of("exit_code"),
            "stdout": value_of("stdout"),
            "stderr": value_of("stderr"),
            "stdout_truncated": value_of("stdout_truncated"),
            "stderr_truncated": value_of("stderr_truncated"),
            "files": value_of("collected_files"),
            "files_truncated": value_of("files_truncated"),
            "usage": value_of("usage"),
            "assigned": {
                "cpus": list(value_of("assigned_cpus")),
                "gpus": list(value_of("assigned_gpus")),
            },
            "attempt": value_of("attempt"),
            "cancel_requested": value_of("cancel_requested_at") is not None,
            "reset_requested": value_of("reset_requested_to"),
            "stuck": {"why": stuck_reason, "since": isoformat_z(value_of("stuck_since"))}
            if stuck_reason
            else None,
            "scheduled_at": isoformat_z(value_of("scheduled_at")),
            "started_at": isoformat_z(value_of("started_at")),
            "finished_at": isoformat_z(value_of("finished_at")),
            "deadline_at": isoformat_z(value_of("deadline_at")),
        },
    }


class TaskList(BaseModel):
    items: list[TaskRead]
    next_cursor: str | None


class TransitionRead(BaseModel):
    seq: int
    task_id: str
    from_phase: str | None
    to_phase: str
    reason: str
    message: str
    at: str
    resource_version: int

    @classmethod
    def from_row(cls, row: Transition) -> "TransitionRead":
        return cls(
            seq=row.seq or 0,
            task_id=row.task_id,
            from_phase=row.from_phase,
            to_phase=row.to_phase,
            reason=row.reason,
            message=row.message,
            at=isoformat_z(row.at) or "",
            resource_version=row.resource_version,
        )


class TransitionList(BaseModel):
    items: list[TransitionRead]


# The most tasks one POST /batches may carry.
MAX_BATCH_TASKS = 1000


class BatchCreate(BaseModel):
    """The body of POST /batches: task bodies, each exactly what POST /tasks takes."""

    model_config = ConfigDict(extra="forbid")

    tasks: list[TaskCreate] = Field(min_length=1, max_length=MAX_BATCH_TASKS)


class BatchCreated(BaseModel):
    """The answer to POST /batches: the batch's id and its tasks' ids, in the order sent."""

    id: str
    task_ids: list[str]
    count: int


class BatchRead(BaseModel):
    """Where a batch stands: how many of its tasks are in each phase (every phase named, 0
    where none is), how many are done (terminal), and how many have a cancellation request."""

    id: str
    created_at: str
    count: int
    done: int
    phases: dict[str, int]
    cancel_requested: int


class ResetRequest(BaseModel):
    """The body of POST /admin/tasks/{id}/reset."""

    model_config = ConfigDict(extra="forbid")

    to: Literal["Pending", "Failed"] = "Pending"
    # A precondition: reset only while the task is at this attempt (409 otherwise), so that a
    # request sent twice, after the controller already carried out the first, resets once.
    attempt: int | None = Field(default=None, ge=1, le=2**31)


class StuckTask(BaseModel):
    task_id: str
    phase: str
    why: str
    since: str | None


class StuckList(BaseModel):
    items: list[StuckTask]
    controller: dict[str, Any]


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    checks: dict[str, Any]
