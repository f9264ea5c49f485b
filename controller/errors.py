"""The controller's exceptions.

TaskyardError
├── RuntimeUnavailable   transient: the engine cannot be reached or lacks the image;
│                        the pass leaves tasks as they are and retries next time
└── StartRejected        permanent: the engine refused this task's container for good;
                         the task fails with the engine's message
"""


class TaskyardError(Exception):
    """Base class of every error the controller raises on purpose."""


class RuntimeUnavailable(TaskyardError):
    """The container engine cannot be used right now."""


class StartRejected(TaskyardError):
    """The engine refused to create or start a task's container, and retrying will not help."""
