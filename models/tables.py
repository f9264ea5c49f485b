"""The tables: tasks (spec written by the API, status by the controller), their phase
transitions, and the host's capacity record (like a Kubernetes Node).
"""

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Column,
    Dialect,
    Index,
    Integer,
    LargeBinary,
    Text,
)
from sqlalchemy.types import TypeDecorator, TypeEngine
from sqlmodel import Field, SQLModel

from models.clock import utcnow
from models.phases import Phase, Reason

# The database refuses any other phase (migration 0009 adds it to existing databases).
PHASE_CHECK = "phase IN ({})".format(", ".join(f"'{phase.value}'" for phase in Phase))
# Keys, seqs and byte counts: INTEGER on SQLite (64 bits there), BIGINT on PostgreSQL, as the
# migrations make them.
BIG = Integer().with_variant(BigInteger(), "postgresql")


class AnyText(TypeDecorator[str]):
    """Text that may hold NUL characters (stdin, what a program prints): TEXT on SQLite, and
    on PostgreSQL, whose TEXT refuses NUL, BYTEA holding the text's UTF-8."""

    impl = Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(LargeBinary())
        return dialect.type_descriptor(Text())

    def process_bind_param(self, value: str | None, dialect: Dialect) -> Any:
        if value is not None and dialect.name == "postgresql":
            return value.encode()
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        if isinstance(value, bytes | memoryview):
            return bytes(value).decode()
        return None if value is None else str(value)


class Task(SQLModel, table=True):
    __tablename__ = "tasks"
    __table_args__ = (
        Index("ix_tasks_phase_pk", "phase", "pk"),
        Index("ix_tasks_batch_pk", "batch_id", "pk"),
        CheckConstraint(PHASE_CHECK, name="ck_tasks_phase"),
    )

    # `pk` orders tasks by arrival (first come, first served; newest first in lists);
    # `id` is the opaque name clients see.
    pk: int | None = Field(default=None, primary_key=True, sa_type=BIG)
    id: str = Field(unique=True, index=True)
    created_at: datetime = Field(default_factory=utcnow)
    # Every write to a task adds one: watchers see a change by it, and the controller reloads
    # a task only when it moved.
    resource_version: int = 1
    # The user token that created it; None in open mode and for the admin.
    owner: str | None = Field(default=None, index=True)
    # The batch it was submitted in (POST /batches), None for a task submitted alone. A
    # batch's tasks are stored in one commit, with one owner and one creation time.
    batch_id: str | None = None

    # spec: written once by the API. The resources as the user wrote them ("1", "1gb"), so
    # that a task's spec can be sent back as is; beside them the numbers the scheduler uses.
    task_type: str
    code: str = Field(sa_column=Column(Text, nullable=False))
    cpu: int
    cpu_text: str
    gpu: int
    gpu_text: str
    ram: str
    ram_bytes: int = Field(sa_type=BIG)
    storage: str
    storage_bytes: int = Field(sa_type=BIG)
    timeout_seconds: int
    stdin: str | None = Field(default=None, sa_column=Column(AnyText, nullable=True))
    # More stdin arrives while it runs, through WS /tasks/{id}/attach.
    interactive: bool = False
    # The runtime's name (never an alias), and what the task brings beside its code, as given.
    runtime: str = "python"
    files: list[dict[str, str]] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    args: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    env: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    collect: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # desired-state changes the API may write after creation
    cancel_requested_at: datetime | None = None
    reset_requested_to: str | None = Field(default=None, index=True)
    reset_requested_at: datetime | None = None

    # status: written only by the controller
    phase: str = Field(default=Phase.PENDING)
    reason: str = Field(default=Reason.CREATED)
    message: str = "waiting for the controller to schedule it"
    result: str | None = Field(default=None, sa_column=Column(AnyText, nullable=True))
    exit_code: int | None = None
    stdout: str | None = Field(default=None, sa_column=Column(AnyText, nullable=True))
    stderr: str | None = Field(default=None, sa_column=Column(AnyText, nullable=True))
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    assigned_cpus: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    assigned_gpus: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # Which attempt this is: 1 from creation, + 1 for each admin requeue. Container names
    # carry it, so an attempt's container is created at most once.
    attempt: int = 1
    scheduled_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    deadline_at: datetime | None = None
    # Recorded by the controller when the task makes no progress, and why.
    # Files collected after the run ({name, size, content in base64}), and whether some were
    # left out; what the run cost ({wall_seconds, cpu_seconds, peak_memory_bytes}).
    collected_files: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    files_truncated: bool = False
    usage: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    stuck_reason: str | None = None
    stuck_since: datetime | None = None


def next_attempt(attempt: int) -> dict[str, Any]:
    """The status fields a task's next attempt starts from, after `attempt`: what the last
    one held, when it ran, how it ended, what it printed and collected and what it cost, all
    cleared. Every path that
    sends a task back to Pending writes these (`controller.act`)."""
    return {
        "attempt": attempt + 1,
        "assigned_cpus": [],
        "assigned_gpus": [],
        "scheduled_at": None,
        "started_at": None,
        "finished_at": None,
        "deadline_at": None,
        "result": None,
        "exit_code": None,
        "stdout": None,
        "stderr": None,
        "stdout_truncated": False,
        "stderr_truncated": False,
        "collected_files": [],
        "files_truncated": False,
        "usage": None,
    }


class Transition(SQLModel, table=True):
    __tablename__ = "transitions"

    seq: int | None = Field(default=None, primary_key=True, sa_type=BIG)
    task_id: str = Field(index=True)
    from_phase: str | None = None
    to_phase: str
    reason: str
    message: str
    at: datetime = Field(default_factory=utcnow)
    resource_version: int


class OutputChunk(SQLModel, table=True):
    """A piece of a running task's stdout or stderr, appended by the controller as it is
    printed, so that GET /tasks/{id}/logs can stream it live. Raw bytes: a character split
    between two chunks is decoded whole by the reader."""

    __tablename__ = "output_chunks"
    __table_args__ = (Index("ix_output_chunks_task_seq", "task_id", "seq"),)

    seq: int | None = Field(default=None, primary_key=True, sa_type=BIG)
    task_id: str
    attempt: int
    stream: str  # "stdout" or "stderr"
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    at: datetime = Field(default_factory=utcnow)


class InputChunk(SQLModel, table=True):
    """Stdin for an interactive task, written by the API (WS /tasks/{id}/attach) and passed
    on to the container by the controller; `eof` closes the task's stdin."""

    __tablename__ = "input_chunks"
    __table_args__ = (Index("ix_input_chunks_task_seq", "task_id", "seq"),)

    seq: int | None = Field(default=None, primary_key=True, sa_type=BIG)
    task_id: str
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    eof: bool = False
    at: datetime = Field(default_factory=utcnow)


class Capacity(SQLModel, table=True):
    """What the host has, what may be handed out, and what is handed out now.

    The controller rewrites this row on every pass; the API reads it to reject requests that
    can never fit and to report health.
    """

    __tablename__ = "capacity"

    node: str = Field(default="local", primary_key=True)
    cpus_total: int = 0
    cpu_ids: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    ram_total: int = Field(default=0, sa_type=BIG)
    ram_allocatable: int = Field(default=0, sa_type=BIG)
    storage_total: int = Field(default=0, sa_type=BIG)
    storage_allocatable: int = Field(default=0, sa_type=BIG)
    gpu_ids: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    gpu_names: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    gpu_sharing: int = 1
    allocated_cpus: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    allocated_gpus: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    allocated_ram: int = Field(default=0, sa_type=BIG)
    allocated_storage: int = Field(default=0, sa_type=BIG)
    runtime_ok: bool = False
    # The runtimes whose images the engine holds: name -> {image, version, packages}.
    runtimes: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    runtime_message: str = "the controller has not reported yet"
    heartbeat_at: datetime | None = None
    # The controller's own counters and histograms, for GET /metrics (see controller.stats).
    stats: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class ApiToken(SQLModel, table=True):
    """A user's bearer token. Only its SHA-256 is stored; the token itself is shown once."""

    __tablename__ = "api_tokens"

    id: str = Field(primary_key=True)
    name: str
    token_hash: str = Field(unique=True, index=True)
    created_at: datetime = Field(default_factory=utcnow)
    revoked_at: datetime | None = None


class Meta(SQLModel, table=True):
    """Small facts about the database itself, such as how far history was compacted."""

    __tablename__ = "meta"

    key: str = Field(primary_key=True)
    value: int = Field(default=0, sa_type=BIG)


TRANSITIONS_COMPACTED_THROUGH = "transitions_compacted_through"
