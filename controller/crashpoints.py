"""Test-only fault injection: named points in a task's life where the controller can be made to
die as `kill -9` would kill it.

`crashpoint(name)` does nothing unless the environment variable `TASKYARD_CRASH_AT`, read once
when this module is imported, names that point (several may be given, comma-separated); then it
sends SIGKILL to its own process on the spot. The crash-matrix and soak tests
(tests/e2e/test_crash_matrix.py) start a controller with the variable set to prove that a
restart recovers from each point. Never set it in production.

The points, in the order a task passes them:

    after-bind     the placement (Scheduled, attempt N) is committed; no container exists yet
    after-create   the container is created but not started (inside the runtime's `run`)
    after-claim    or: a warm container is fitted and renamed to the attempt's name, and has
                   not been given the code yet (inside the runtime's `run`)
    after-start    the container is started and has its code; Running is not yet written
    after-exit     the container has exited; its outcome is not yet written
    after-status   the outcome is committed; the container is not yet removed
"""

import os
import signal

ENVIRONMENT_VARIABLE = "TASKYARD_CRASH_AT"
POINTS = ("after-bind", "after-create", "after-claim", "after-start", "after-exit", "after-status")
_ARMED = frozenset(
    name.strip() for name in os.environ.get(ENVIRONMENT_VARIABLE, "").split(",") if name.strip()
)


def crashpoint(name: str) -> None:
    """Die here, at once and without cleanup, when the environment asks for it."""
    if name in _ARMED:
        os.kill(os.getpid(), signal.SIGKILL)
