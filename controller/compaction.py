"""Compaction: the history and live output that the database need not keep forever.

The newest `transition_retention` transitions are kept, and the `meta` table says where
history now begins (a watch resuming from before it gets 410). Live-output chunks of tasks that
ended more than `output_chunk_retention_seconds` ago are dropped: their final stdout and stderr
stay on the task. Input that waited for a task which has ended is dropped too. The reconcile
pass calls `compact_history` about once a minute.
"""

import logging
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlmodel import col

from models.database import Database
from models.phases import TERMINAL_PHASES
from models.settings import Settings
from models.tables import (
    TRANSITIONS_COMPACTED_THROUGH,
    InputChunk,
    Meta,
    OutputChunk,
    Task,
    Transition,
)

log = logging.getLogger("taskyard.controller")


def compact_history(database: Database, settings: Settings, now: datetime) -> None:
    ended_before = now - timedelta(seconds=settings.output_chunk_retention_seconds)
    finished = (
        select(col(Task.id))
        .where(col(Task.id).in_(select(col(OutputChunk.task_id)).distinct()))
        .where(col(Task.phase).in_([p.value for p in TERMINAL_PHASES]))
        .where(col(Task.finished_at) < ended_before)
    )
    ended = (
        select(col(Task.id))
        .where(col(Task.id).in_(select(col(InputChunk.task_id)).distinct()))
        .where(col(Task.phase).in_([p.value for p in TERMINAL_PHASES]))
    )
    with database.write() as session:
        session.execute(delete(OutputChunk).where(col(OutputChunk.task_id).in_(finished)))
        session.execute(delete(InputChunk).where(col(InputChunk.task_id).in_(ended)))
        session.commit()

    with database.read() as session:
        newest = session.execute(select(func.max(col(Transition.seq)))).scalar() or 0
        marker = session.get(Meta, TRANSITIONS_COMPACTED_THROUGH)
    through = newest - settings.transition_retention
    if through <= (marker.value if marker else 0):
        return
    with database.write() as session:
        session.execute(delete(Transition).where(col(Transition.seq) <= through))
        row = session.get(Meta, TRANSITIONS_COMPACTED_THROUGH) or Meta(
            key=TRANSITIONS_COMPACTED_THROUGH
        )
        row.value = through
        session.add(row)
        session.commit()
    log.info("compacted transitions through seq %d", through)
