"""Containers whose removal runs in the background: `controller.act` adds one when it hands a
finished task's container to `ContainerRuntime.remove_soon`, the runtime's thread takes it off
when done, and `controller.observe` reads the set, so that no pass asks the engine for their
exit record nor removes them a second time.
"""

import threading


class Removals:
    """A thread-safe set of container names."""

    def __init__(self) -> None:
        self._names: set[str] = set()
        self._lock = threading.Lock()

    def add(self, name: str) -> None:
        with self._lock:
            self._names.add(name)

    def discard(self, name: str) -> None:
        with self._lock:
            self._names.discard(name)

    def names(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._names)
