"""Live output: one reader thread per running container copies what it prints, and one writer
thread appends it to the `output_chunks` table in batches, where GET /tasks/{id}/logs streams
it from. The reconcile pass starts a reader for every running container it sees (again after a
restart: the reader skips what is already stored) and, before it records a task's outcome,
waits for that task's reader to finish, so the stream is complete when the task is terminal.
A reader that saw the supervisor's report also holds the task's whole output (up to the cap),
which the judge then takes instead of reading the log again from a container that may still
be busy exiting.
"""

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlmodel import col

from controller.errors import RuntimeUnavailable
from controller.runtime import CapturedOutput, ContainerRuntime
from models.database import Database
from models.tables import OutputChunk
from sandbox.frames import READ_FILE_BYTES, READ_FILES, REPORT, FileAssembler
from sandbox.supervisor import Report, read_report

log = logging.getLogger("taskyard.controller.output")

BATCH_SECONDS = 0.05
STREAMS = ("stdout", "stderr")


@dataclass(frozen=True)
class _Piece:
    task_id: str
    attempt: int
    stream: str
    data: bytes


class ChunkWriter:
    """Appends output pieces to the database, a batch every `BATCH_SECONDS` at most."""

    def __init__(self, database: Database) -> None:
        self._db = database
        self._queue: queue.Queue[_Piece | threading.Event | None] = queue.Queue()
        self._thread = threading.Thread(
            target=self._run, name="taskyard-output-writer", daemon=True
        )
        self._thread.start()

    def put(self, piece: _Piece) -> None:
        self._queue.put(piece)

    def flush(self, timeout: float = 5.0) -> None:
        """Return once everything put so far is committed."""
        done = threading.Event()
        self._queue.put(done)
        done.wait(timeout)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(5.0)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            batch: list[_Piece] = []
            barriers: list[threading.Event] = []
            deadline = time.monotonic() + BATCH_SECONDS
            while True:
                if item is None:
                    self._write(batch)
                    for barrier in barriers:
                        barrier.set()
                    return
                if isinstance(item, threading.Event):
                    barriers.append(item)
                    break  # a flush wants this batch committed now
                batch.append(item)
                try:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
            self._write(batch)
            for barrier in barriers:
                barrier.set()

    def _write(self, batch: list[_Piece]) -> None:
        if not batch:
            return
        # A flood of small writes becomes a few rows: adjacent pieces of one stream merge.
        merged: list[_Piece] = []
        for piece in batch:
            last = merged[-1] if merged else None
            if last is not None and (last.task_id, last.attempt, last.stream) == (
                piece.task_id,
                piece.attempt,
                piece.stream,
            ):
                merged[-1] = _Piece(last.task_id, last.attempt, last.stream, last.data + piece.data)
            else:
                merged.append(piece)
        batch = merged
        try:
            with self._db.write() as session:
                session.add_all(
                    OutputChunk(task_id=p.task_id, attempt=p.attempt, stream=p.stream, data=p.data)
                    for p in batch
                )
                session.commit()
        except Exception:  # losing live output must not stop the controller
            log.exception("could not store %d output chunks", len(batch))


def stored_bytes(database: Database, task_id: str, attempt: int) -> dict[str, int]:
    with database.read() as session:
        rows = session.execute(
            select(col(OutputChunk.stream), func.sum(func.length(col(OutputChunk.data))))
            .where(col(OutputChunk.task_id) == task_id, col(OutputChunk.attempt) == attempt)
            .group_by(col(OutputChunk.stream))
        ).all()
    stored = dict.fromkeys(STREAMS, 0)
    stored.update({stream: int(total or 0) for stream, total in rows})
    return stored


class OutputReader:
    """Copies one container's output into the writer, up to `limit` bytes per stream."""

    def __init__(
        self,
        database: Database,
        runtime: ContainerRuntime,
        writer: ChunkWriter,
        *,
        task_id: str,
        attempt: int,
        name: str,
        limit: int,
        on_report: Callable[[], None] | None = None,
    ) -> None:
        self._db = database
        self._runtime = runtime
        self._writer = writer
        self._task_id = task_id
        self._attempt = attempt
        self._name = name
        self._limit = limit
        self._on_report = on_report
        self.report: Report | None = None  # the supervisor's, once it came
        # Everything read, as the engine's log would give it back (one byte past the cap, so
        # that the judge sees a cut as `output()` would show it): complete once `report` is set.
        self._read: dict[str, bytearray] = {stream: bytearray() for stream in STREAMS}
        self.output: CapturedOutput | None = None
        self._thread = threading.Thread(
            target=self._run, name=f"taskyard-output-{name}", daemon=True
        )

    def start(self) -> "OutputReader":
        self._thread.start()
        return self

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def _run(self) -> None:
        # An earlier reader of this container in this process may have pieces in flight.
        self._writer.flush()
        stored = stored_bytes(self._db, self._task_id, self._attempt)
        seen = dict.fromkeys(STREAMS, 0)

        def keep(stream: str, data: bytes) -> None:
            start, seen[stream] = seen[stream], seen[stream] + len(data)
            read = self._read[stream]
            if len(read) <= self._limit:
                read += data[: self._limit + 1 - len(read)]
            # Skip what an earlier reader stored (the engine replays from the start), and
            # keep nothing past the cap.
            low = max(stored[stream] - start, 0)
            high = min(len(data), self._limit - start)
            if high > low:
                self._writer.put(_Piece(self._task_id, self._attempt, stream, data[low:high]))

        files = FileAssembler(READ_FILES, READ_FILE_BYTES)
        pieces = self._runtime.follow(self._name)
        try:
            for stream, data in pieces:
                if stream == REPORT:
                    # The supervisor's last word: all the task's output came before it, so
                    # there is nothing more to copy, and the task can be judged now.
                    self.report = read_report(data)
                    files.finish()
                    self.output = CapturedOutput(
                        bytes(self._read["stdout"]),
                        bytes(self._read["stderr"]),
                        self.report,
                        tuple(files.files),
                        files.truncated,
                    )
                    if self._on_report is not None:
                        self._on_report()
                    return
                if stream in self._read:
                    keep(stream, data)
                else:  # a collected file's header or bytes, after the code has ended
                    files.add(stream, data)
        except RuntimeUnavailable as exc:
            log.warning("live output of %s stopped: %s", self._name, exc)
        except Exception:
            log.exception("live output of %s stopped", self._name)
        finally:
            close = getattr(pieces, "close", None)
            if close is not None:
                close()
