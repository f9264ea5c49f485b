"""Group commit for new tasks: one writer thread inserts whatever submissions are waiting in
one transaction, and answers each once that transaction is durable.

Sixteen request threads that each begin their own write transaction spend their time in
SQLite's busy handler (it sleeps up to 100 ms at a time); one writer that commits a batch pays
one fsync for all of it. No 201 is sent before its row is committed.
"""

import asyncio
import contextlib
import queue
import threading

from models.database import Database
from models.phases import Phase, Reason
from models.tables import Task, Transition

MAX_BATCH = 256

_Waiter = tuple[Task, asyncio.Future[None], asyncio.AbstractEventLoop]


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


class SubmissionWriter:
    def __init__(self, database: Database) -> None:
        self._db = database
        self._queue: queue.Queue[_Waiter | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    async def insert(self, task: Task) -> None:
        """Store the task and its first transition; return once they are committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._ensure_started()
        self._queue.put((task, future, loop))
        await future

    def close(self) -> None:
        """Stop the writer after what is queued; a later insert starts a new one (the app's
        lifespan may run again, as it does under test clients)."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(10)

    def _ensure_started(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name="taskyard-submissions")
                self._thread.start()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            with contextlib.suppress(queue.Empty):
                while len(batch) < MAX_BATCH:
                    item = self._queue.get_nowait()
                    if item is None:
                        self._queue.put(None)  # stop after this batch
                        break
                    batch.append(item)
            error: BaseException | None = None
            try:
                self._write([task for task, _, _ in batch])
            except Exception as exc:  # every waiter hears it: none was stored
                error = exc
            for _, future, loop in batch:
                loop.call_soon_threadsafe(_settle, future, error)

    def _write(self, tasks: list[Task]) -> None:
        with self._db.write() as session:
            for task in tasks:
                session.add(task)
                session.add(Transition(task_id=task.id, from_phase=None, to_phase=Phase.PENDING,
                                       reason=Reason.CREATED, message="task submitted",
                                       at=task.created_at,
                                       resource_version=task.resource_version))
            session.commit()
