"""The narrow seam between the controller and a container engine.

`ContainerRuntime` is what the reconcile executor calls; `controller.docker_runtime` implements
it on the local Docker engine and `controller.fake_runtime` in memory for unit tests. Every
container carries the owning instance and the task in its labels, and its name is
deterministic (`container_name`), so each effect can be looked up before it is repeated.
"""

from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from sandbox.frames import CollectedFile
from sandbox.supervisor import Report

OWNER_LABEL = "taskyard.owner"
TASK_LABEL = "taskyard.task"
ATTEMPT_LABEL = "taskyard.attempt"
# Set on warm containers (see `controller.warm_pool`): started before any task claimed them, so
# their task and attempt are in their name (given at the claim), not in their labels.
WARM_LABEL = "taskyard.warm"


def container_name(owner: str, task_id: str, attempt: int) -> str:
    return f"taskyard-{owner[:12]}-{task_id}-{attempt}"


@dataclass(frozen=True)
class ContainerSpec:
    """Everything the engine needs to run one attempt of one task, hardened."""

    name: str
    labels: dict[str, str]
    image: str
    cpus: tuple[int, ...]  # dedicated cores; empty means best effort on all allocatable cores
    all_cpus: tuple[int, ...]
    cpu_quota: float  # in CPUs
    gpus: tuple[int, ...]
    ram: int
    storage: int
    pids_limit: int
    nofile_limit: int
    payload: bytes  # the code and stdin, delivered on the container's stdin
    log_limit: int
    docker_runtime: str | None = None
    interactive: bool = False  # keep stdin open after the payload, for send_input
    # The work area allows exec(): the runtime's compile step writes the program there.
    exec_work: bool = False


@dataclass(frozen=True)
class WarmKey:
    """What a warm container can be claimed for: every setting of a `ContainerSpec` that cannot
    change after the container is created. The rest (cores, CPU quota, memory) is fitted."""

    image: str
    storage: int
    pids_limit: int
    nofile_limit: int
    log_limit: int
    docker_runtime: str | None
    exec_work: bool = False

    @classmethod
    def of(cls, spec: ContainerSpec) -> "WarmKey | None":
        """The key a spec can claim with; None where no warm container can serve it (GPUs)."""
        if spec.gpus:
            return None
        return cls(
            spec.image,
            spec.storage,
            spec.pids_limit,
            spec.nofile_limit,
            spec.log_limit,
            spec.docker_runtime,
            spec.exec_work,
        )


@dataclass(frozen=True)
class ObservedContainer:
    name: str
    task_id: str
    attempt: int
    state: str  # created, running, paused, restarting, removing, exited, dead
    exit_code: int | None = None
    oom_killed: bool = False
    started_at: datetime | None = None
    finished_at: datetime | None = None
    # Its code ran in a gVisor sandbox, where a fork bomb, an OOM kill or a SIGKILL to PID 1
    # ends the whole container, the supervisor with it.
    sandboxed: bool = False

    @property
    def has_exited(self) -> bool:
        return self.state in {"exited", "dead"}

    @property
    def never_started(self) -> bool:
        return self.state == "created"


class InputResult(StrEnum):
    """What became of a piece of stdin offered to a container (`ContainerRuntime.send_input`)."""

    SENT = "sent"  # taken: it is on its way to the container
    FULL = "full"  # not taken: the container is not reading; offer the same piece again later
    CLOSED = "closed"  # not taken, nor ever will be: the container's stdin is closed


@dataclass(frozen=True)
class CapturedOutput:
    """What a container's code printed, and the supervisor's report where one came: apart
    from the streams, which are the task's to fill with anything."""

    stdout: bytes
    stderr: bytes
    report: Report | None = None
    # The files collected after the run, as far as they came whole (bounded by the frame
    # reader's own limits; the controller applies the task's settings when it stores them).
    files: tuple[CollectedFile, ...] = ()
    files_truncated: bool = False


@dataclass(frozen=True)
class RuntimeHealth:
    ok: bool
    message: str
    data_root: str | None = None
    details: dict[str, str] = field(default_factory=dict)
    # The runtimes whose images the engine holds: name -> {image, version, packages}.
    runtimes: dict[str, dict[str, Any]] = field(default_factory=dict)


class ContainerRuntime(Protocol):
    def health(self) -> RuntimeHealth:
        """Whether containers can be started now (engine reachable, image present)."""
        ...

    def list_owned(self, *, settled: Collection[str] = ()) -> list[ObservedContainer]:
        """Every container this instance created, in any state. Those named in `settled` (the
        caller knows how their code ended) may come without their exit details."""
        ...

    def run(self, spec: ContainerSpec) -> ObservedContainer:
        """Create and start the container, and deliver its payload on stdin."""
        ...

    def keep_warm(self, wanted: list[tuple[ContainerSpec, int]]) -> None:
        """Keep this many warm containers started for each template spec (a spec without a
        task: no name, labels or payload), for `run` to claim; an empty list keeps none."""
        ...

    def close(self) -> None:
        """Remove the warm containers no task claimed."""
        ...

    def send_input(self, name: str, data: bytes, *, eof: bool) -> InputResult:
        """Pass stdin to an interactive container this process started, without blocking: the
        piece is taken whole or not at all (FULL while the container is not reading); CLOSED
        where its stdin is no longer open (closed, or started by an earlier controller)."""
        ...

    def kill(self, name: str) -> None:
        """Send the container SIGKILL without waiting for it to stop; already stopped or gone
        is success. A later `list_owned` shows it exited (the Docker engine's "die" event
        wakes a pass for that)."""
        ...

    def inspect(self, name: str) -> ObservedContainer | None:
        """The container as the engine shows it now; None where it is gone."""
        ...

    def follow(self, name: str) -> Iterator[tuple[str, bytes]]:
        """(stream, bytes) of the container's output from its start, live, until it stops:
        "stdout" and "stderr" pieces, and last the supervisor's report (stream "report")."""
        ...

    def output(self, name: str) -> CapturedOutput:
        """The container's stdout and stderr as raw bytes."""
        ...

    def remove(self, name: str) -> None:
        """Remove the container; already gone is success."""
        ...

    def remove_soon(self, name: str, then: Callable[[], None] | None = None) -> None:
        """Remove the container in the background (its task's outcome is already stored), and
        call `then` once it is gone, or once that failed (a later pass then finds it)."""
        ...
