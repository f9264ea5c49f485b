"""The controller's exceptions.

TaskyardError
├── RuntimeUnavailable   transient: the engine cannot be reached or lacks the image;
│   │                    the pass leaves tasks as they are and retries next time
│   ├── ImageMissing     the image a container needs is not on the engine
│   └── ContainerGone    the container named is not on the engine (removed, or never made)
└── StartRejected        permanent: the engine refused this task's container for good;
                         the task fails with the engine's message

`controller.engine_errors` is the one place that turns the docker SDK's errors into these.
"""


class TaskyardError(Exception):
    """Base class of every error the controller raises on purpose."""


class RuntimeUnavailable(TaskyardError):
    """The container engine cannot be used right now."""


class ImageMissing(RuntimeUnavailable):
    """The image a container needs is not on the engine (`taskyard image build` makes it)."""


class ContainerGone(RuntimeUnavailable):
    """The container is not on the engine: callers that want it gone take this as success."""


class StartRejected(TaskyardError):
    """The engine refused to create or start a task's container, and retrying will not help."""
