"""The reconcile pass: observe the world (`controller.observe`), plan from it without side
effects (`controller.plan`), act on the plan (`controller.act`), and carry what the next pass
needs in one `PassMemory` (`controller.memory`). `controller.service` runs the passes.
"""

import time
from collections.abc import Callable
from datetime import datetime

from controller.act import Executor, PassReport
from controller.following import Followers
from controller.gpus import GpuInfo, discover_gpus
from controller.input_forwarding import InputForwarder
from controller.memory import PassMemory, forget_past
from controller.observe import Observer
from controller.output import ChunkWriter
from controller.plan import next_deadline, plan_capacity, plan_queue, plan_tasks, plan_upkeep
from controller.removals import Removals
from controller.runtime import ContainerRuntime
from controller.stats import ControllerStats
from models.clock import utcnow
from models.database import Database
from models.settings import Settings

__all__ = ["PassReport", "Reconciler"]


class Reconciler:
    """One reconcile pass at a time over the database and the runtime."""

    def __init__(
        self,
        settings: Settings,
        database: Database,
        runtime: ContainerRuntime,
        *,
        owner: str,
        gpu_probe: Callable[[], tuple[list[GpuInfo], str]] = discover_gpus,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._settings = settings
        self._runtime = runtime
        self._clock = clock
        self.stats = ControllerStats()
        self.memory = PassMemory()
        # Asks for a pass soon (the service sets it): a supervisor has reported.
        self.wake_hook: Callable[[], None] | None = None
        self._writer = ChunkWriter(database)
        followers = Followers(
            database,
            runtime,
            self._writer,
            limit=settings.output_limit_bytes,
            on_report=self._wake,
        )
        removals = Removals()
        self._observer = Observer(
            settings,
            database,
            runtime,
            owner=owner,
            gpu_probe=gpu_probe,
            followers=followers,
            removals=removals,
        )
        self._executor = Executor(
            settings,
            database,
            runtime,
            owner=owner,
            clock=clock,
            stats=self.stats,
            memory=self.memory,
            followers=followers,
            removals=removals,
            input_forwarder=InputForwarder(database, runtime, wake=self._wake),
            wake=self._wake,
        )

    def _wake(self) -> None:
        if self.wake_hook is not None:
            self.wake_hook()

    def close(self) -> None:
        """Stop the output writer after it has stored what it holds; remove warm containers."""
        self._writer.close()
        self._runtime.close()

    def reconcile_once(self) -> PassReport:
        """One pass, in three rounds (see `controller.plan`): the tasks in flight, then the
        queue on the slots they freed, then upkeep; each on the tasks as read after the last."""
        began, now = time.perf_counter(), self._clock()
        report, memory, act = PassReport(), self.memory, self._executor.run
        seen = self._observer.observe(now)
        report.runtime_ok = seen.health.ok
        if not seen.health.ok:
            self.stats.engine_errors += 1
        forget_past(memory, seen)
        act(plan_tasks(seen, memory), seen, report)

        queue = self._observer.reread(seen)
        act(plan_queue(queue, memory, before=seen), queue, report)

        # Without an engine, round two only notes why tasks wait, which upkeep does not read.
        after = self._observer.reread(queue) if queue.health.ok else queue
        act(plan_upkeep(after, memory, self._settings, at=self._clock()), after, report)
        self.stats.pass_seconds.observe(time.perf_counter() - began)
        act(plan_capacity(after, memory, self._settings), after, report)
        report.next_deadline = next_deadline(after, memory)
        return report
