"""Request and response shapes of the REST contract (`docs/api.md`).

`TaskCreate` keeps the seed's request shape and validation rules (never looser); `TaskRead` is
the Task object clients see, built from a `tables.Task` row by `TaskRead.from_row` (its shape
is `task_document`).
"""

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
)

from models.clock import isoformat_z
from models.quantities import parse_count, parse_size
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


class TaskCreate(BaseModel):
    """The body of POST /tasks: the seed's RequestDTO plus `timeout_seconds` and `stdin`."""

    model_config = ConfigDict(extra="forbid")

    task_type: TaskType
    code: StrictStr
    resources: ResourcesIn
    timeout_seconds: StrictInt | None = None
    stdin: StrictStr | None = None
    interactive: StrictBool = False

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


class TaskSpecOut(BaseModel):
    task_type: str
    code: str
    resources: ResourcesOut
    timeout_seconds: int
    stdin: str | None
    interactive: bool


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
    """The Task object of the contract."""

    id: str
    created_at: str
    resource_version: int
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
