"""What one reconcile pass leaves to the next: `PassMemory`, the only state carried between
passes. `controller.loop` owns it; `controller.act` adds to it as it acts, `forget_past` drops
what a new observation shows is over, and `controller.plan` reads it.

Everything else a pass needs it observes afresh. A new controller process starts with an empty
memory, and the crash matrix (tests/e2e/test_crash_matrix.py) proves that is enough.
"""

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime

from controller.observe import Observation
from controller.reconcile import Stop
from controller.scheduling import Holding
from models.phases import Phase

# The warm pool keeps the storage size most used by this many recent starts.
RECENT_STARTS = 32


@dataclass
class PassMemory:
    # Containers sent SIGKILL, with the outcome that ends their task once a later pass sees
    # them stopped (the kill does not wait for that).
    stopping: dict[str, Stop] = field(default_factory=dict)
    # Containers this process started (or began to), of those the engine still holds; any
    # other was started by an earlier controller, which stopped on the way.
    started_here: set[str] = field(default_factory=set)
    # Containers judged at their supervisor's report, still exiting: their task's slots, held
    # until the engine shows them stopped.
    draining: dict[str, Holding] = field(default_factory=dict)
    # The storage sizes of the latest starts, for sizing the warm pool.
    # (runtime, storage) of the tasks started lately: the warm pool's shape when none waits.
    recent_starts: deque[tuple[str, int]] = field(
        default_factory=lambda: deque(maxlen=RECENT_STARTS)
    )
    # The capacity row as last written, and when: a pass that changes nothing writes nothing
    # but the heartbeat, now and again.
    capacity_written: dict[str, object] | None = None
    heartbeat_at: datetime | None = None
    compacted_at: datetime | None = None


def forget_past(memory: PassMemory, seen: Observation) -> None:
    """Drop what `seen` shows is over: kills of tasks that have ended, draining and started
    containers the engine no longer shows running or at all."""
    if memory.stopping:  # kept while its task has not ended
        ending = {
            seen.name_of(task)
            for task in seen.tasks
            if task.phase in {Phase.SCHEDULED, Phase.RUNNING}
        }
        memory.stopping = {n: s for n, s in memory.stopping.items() if n in ending}
    if seen.containers is None:
        return  # the engine could not be asked: nothing is known to be over
    listed = seen.containers.values()
    still = {c.name for c in listed if c.state in {"running", "paused", "restarting"}}
    memory.draining = {n: h for n, h in memory.draining.items() if n in still}
    memory.started_here.intersection_update(c.name for c in listed)
