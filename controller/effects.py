"""What a reconcile pass does, as values: `controller.plan` returns a list of `Effect`s and
`controller.act` carries them out in order, each with everything it needs.

`Converge` carries one of `controller.reconcile.decide`'s actions for one task; the rest are
the pass's own work (output readers, placements, notes, the warm pool, upkeep).
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from controller.observe import TaskRecord
from controller.reconcile import Action, Exit, Stop
from controller.runtime import ContainerSpec
from controller.scheduling import Placement
from models.phases import Reason


@dataclass(frozen=True)
class Follow:
    """Copy the running container's output into the database (one reader per container)."""

    task: TaskRecord
    name: str


@dataclass(frozen=True)
class Converge:
    """Carry out `decision` for one task, with what the pass observed of its container."""

    task: TaskRecord
    name: str
    decision: Action
    has_container: bool = False  # the engine lists the attempt's container
    # Reset: the container still runs, so it is sent SIGKILL first (its exit wakes the pass
    # that resets the task).
    running: bool = False
    # Finish: how the code ended (None for a container killed and gone), the outcome its kill
    # was sent for, and whether an earlier controller process started it.
    ended: Exit | None = None
    forced: Stop | None = None
    adopted: bool = False


@dataclass(frozen=True)
class RemoveOrphan:
    """Remove a container of ours whose task is gone, terminal, or on a later attempt."""

    name: str
    task_id: str


@dataclass(frozen=True)
class ForwardInput:
    """Pass waiting stdin on to these interactive tasks: (task id, container name)."""

    running: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Bind:
    """Write the placement (Pending to Scheduled, durably), then start the container."""

    task: TaskRecord
    name: str
    placement: Placement
    message: str


@dataclass(frozen=True)
class NeverFits:
    """Fail a task that asks for more than this host can ever allocate."""

    task: TaskRecord
    message: str


@dataclass(frozen=True)
class NoteWaiting:
    """Say why these Pending tasks wait (task id to message), for this reason."""

    reason: Reason
    messages: Mapping[str, str]


@dataclass(frozen=True)
class KeepWarm:
    """Keep this many warm containers started per template (the whole pool: none if empty)."""

    wanted: tuple[tuple[ContainerSpec, int], ...]


@dataclass(frozen=True)
class RecordStuck:
    """Write down which tasks make no progress and why (None: no longer stuck)."""

    changes: tuple[tuple[TaskRecord, str | None], ...]
    at: datetime


@dataclass(frozen=True)
class CompactHistory:
    at: datetime


@dataclass(frozen=True)
class WriteCapacity:
    """Rewrite the capacity row (with the controller's stats) and the heartbeat."""

    fields: Mapping[str, object]
    at: datetime


Effect = (
    Follow
    | Converge
    | RemoveOrphan
    | ForwardInput
    | Bind
    | NeverFits
    | NoteWaiting
    | KeepWarm
    | RecordStuck
    | CompactHistory
    | WriteCapacity
)
