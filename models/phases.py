"""Task phases and the reasons that explain them, as one-word CamelCase constants."""

from enum import StrEnum


class Phase(StrEnum):
    PENDING = "Pending"
    SCHEDULED = "Scheduled"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    TIMED_OUT = "TimedOut"
    CANCELLED = "Cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_PHASES

    @classmethod
    def named(cls, text: str) -> "Phase | None":
        """The phase `text` names in any case (`running`, `RUNNING`); None if it names none."""
        return _BY_LOWER_NAME.get(text.lower())


TERMINAL_PHASES = frozenset({Phase.SUCCEEDED, Phase.FAILED, Phase.TIMED_OUT, Phase.CANCELLED})
ACTIVE_PHASES = frozenset({Phase.PENDING, Phase.SCHEDULED, Phase.RUNNING})
_BY_LOWER_NAME = {phase.value.lower(): phase for phase in Phase}


class Reason(StrEnum):
    CREATED = "Created"
    UNSCHEDULABLE = "Unschedulable"
    EXCEEDS_CAPACITY = "ExceedsCapacity"
    RUNTIME_UNAVAILABLE = "RuntimeUnavailable"
    SCHEDULED = "Scheduled"
    STARTED = "Started"
    COMPLETED = "Completed"
    NON_ZERO_EXIT = "NonZeroExit"
    COMPILE_ERROR = "CompileError"
    OOM_KILLED = "OOMKilled"
    DEADLINE_EXCEEDED = "DeadlineExceeded"
    CANCELLED = "Cancelled"
    CONTAINER_LOST = "ContainerLost"
    SANDBOX_DIED = "SandboxDied"
    START_FAILED = "StartFailed"
    ADMIN_RESET = "AdminReset"
