"""The readers that copy running containers' output into the database, one per container:
`controller.act` starts and stops them, `controller.observe` reads the supervisors' reports
they catch, which tell how a task's code ended before the engine's exit record does.
"""

import signal
from collections.abc import Callable

from controller.output import ChunkWriter, OutputReader
from controller.runtime import CapturedOutput, ContainerRuntime
from models.database import Database
from sandbox.supervisor import Report


class Followers:
    def __init__(
        self,
        database: Database,
        runtime: ContainerRuntime,
        writer: ChunkWriter,
        *,
        limit: int,
        on_report: Callable[[], None],
    ) -> None:
        self._db = database
        self._runtime = runtime
        self._writer = writer
        self._limit = limit
        self._on_report = on_report  # asks for a pass soon
        self._readers: dict[str, OutputReader] = {}

    def follow(self, task_id: str, attempt: int, name: str) -> None:
        """Make sure a reader copies this running container's output (once per container)."""
        reader = self._readers.get(name)
        if reader is not None and (reader.is_alive() or reader.report is not None):
            return  # still reading, or done: the supervisor reported
        self._readers[name] = OutputReader(
            self._db,
            self._runtime,
            self._writer,
            task_id=task_id,
            attempt=attempt,
            name=name,
            limit=self._limit,
            on_report=self._on_report,
        ).start()

    def reports(self) -> dict[str, Report]:
        """The supervisors' reports that settle how the code ended, by container: not for a
        code killed by SIGKILL, which may be an OOM kill: that one waits for the engine's exit
        record and its OOM flag (the report's count of the cgroup's OOM kills backs it up)."""
        reports = {}
        for name, reader in list(self._readers.items()):
            report = reader.report
            if report is not None and report.signal != signal.SIGKILL:
                reports[name] = report
        return reports

    def stop(self, name: str) -> CapturedOutput | None:
        """Wait for the container's reader to drain (its container has stopped) and store;
        the output it read, where it read all of it (it saw the supervisor's report)."""
        reader = self._readers.pop(name, None)
        if reader is None:
            return None
        reader.join(timeout=2.0)
        self._writer.flush()
        return reader.output
