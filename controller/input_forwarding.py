"""Stdin of interactive tasks, from the database to their containers: the reconcile pass calls
`InputForwarder.forward` once per pass.

The API stores what clients send as `InputChunk` rows. Each piece is offered to the runtime
once, in order; the runtime never blocks on it. A piece it refuses because the task is not
reading (FULL) is kept here and offered first on a later pass, without reading the database
again, and nothing after it goes before it: the backlog stays in the database, where the API
bounds it. Pieces passed on are deleted, so the table holds only what still waits.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlmodel import col

from controller.runtime import ContainerRuntime, InputResult
from models.database import Database
from models.tables import InputChunk

log = logging.getLogger("taskyard.controller")

# Pieces read per task and pass: a client that sends many small ones cannot make one pass long.
PIECES_PER_PASS = 64


@dataclass
class _Cursor:
    """Where one container's stdin stands."""

    # The last piece passed on and not yet deleted: later pieces have higher seqs while it is
    # stored. Once it is deleted this is 0 again, since SQLite then reuses the highest seqs.
    after: int = 0
    closed: bool = False
    refused: InputChunk | None = None  # the piece the runtime refused last, offered first


class InputForwarder:
    def __init__(
        self, database: Database, runtime: ContainerRuntime, *, wake: Callable[[], None]
    ) -> None:
        self._db = database
        self._runtime = runtime
        self._wake = wake  # asks for another pass soon
        self._cursors: dict[str, _Cursor] = {}

    def forward(self, running: list[tuple[str, str]]) -> None:
        """Pass waiting input on to these running interactive tasks: (task id, container)."""
        for task_id, name in running:
            cursor = self._cursors.setdefault(name, _Cursor())
            if cursor.closed:
                continue
            before = cursor.after
            if cursor.refused is None or self._offer(task_id, name, cursor, [cursor.refused]):
                with self._db.read() as session:
                    pieces = list(
                        session.scalars(
                            select(InputChunk)
                            .where(
                                col(InputChunk.task_id) == task_id,
                                col(InputChunk.seq) > cursor.after,
                            )
                            .order_by(col(InputChunk.seq))
                            .limit(PIECES_PER_PASS)
                        )
                    )
                if self._offer(task_id, name, cursor, pieces) and len(pieces) == PIECES_PER_PASS:
                    self._wake()  # more may wait
            if cursor.after != before or cursor.closed:
                self._delete(task_id, None if cursor.closed else cursor.after)
                cursor.after = 0

    def forget(self, name: str) -> None:
        """The container is done with: drop what was kept for it."""
        self._cursors.pop(name, None)

    def _offer(self, task_id: str, name: str, cursor: _Cursor, pieces: list[InputChunk]) -> bool:
        """Offer the pieces in order; False where one was refused or the stdin is closed."""
        for piece in pieces:
            result = self._runtime.send_input(name, piece.data, eof=piece.eof)
            if result == InputResult.FULL:
                cursor.refused = piece
                return False
            cursor.refused = None
            cursor.after = piece.seq or cursor.after
            if result == InputResult.CLOSED or piece.eof:
                cursor.closed = True
                if result == InputResult.CLOSED:
                    log.warning(
                        "task %s: its stdin is no longer open (its container was stopped, "
                        "or a controller restart closed it); input is dropped",
                        task_id,
                    )
                return False
        return True

    def _delete(self, task_id: str, through: int | None) -> None:
        """Delete the task's pieces up to `through`; all of them where None (stdin closed)."""
        with self._db.write() as session:
            statement = delete(InputChunk).where(col(InputChunk.task_id) == task_id)
            if through is not None:
                statement = statement.where(col(InputChunk.seq) <= through)
            session.execute(statement)
            session.commit()
