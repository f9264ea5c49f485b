"""Guarded status writes: every phase change is `UPDATE … WHERE id = ? AND phase = ? AND
attempt = ?`, and commits together with its transition record, or not at all.

A second controller, a crash and replay, or an API write in between can therefore never move a
task twice: the losing writer sees zero rows and leaves the task alone.
"""

from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col

from models.phases import Phase, Reason
from models.tables import Task, Transition


def move(
    session: Session,
    *,
    task_id: str,
    from_phase: Phase,
    at_attempt: int,
    to_phase: Phase,
    reason: Reason,
    message: str,
    now: datetime,
    **fields: Any,
) -> bool:
    """Move a task from `from_phase` to `to_phase`; False where it was no longer there."""
    statement = (
        update(Task)
        .where(col(Task.id) == task_id, col(Task.phase) == from_phase,
               col(Task.attempt) == at_attempt)
        .values(
            # A task that moves is no longer stuck (fields may still say otherwise).
            **({"stuck_reason": None, "stuck_since": None} | fields),
            phase=to_phase,
            reason=reason,
            message=message,
            resource_version=Task.resource_version + 1,
        )
        .returning(col(Task.resource_version))
    )
    version = session.execute(statement).scalar_one_or_none()
    if version is None:
        session.rollback()
        return False
    session.add(
        Transition(
            task_id=task_id,
            from_phase=from_phase,
            to_phase=to_phase,
            reason=reason,
            message=message,
            at=now,
            resource_version=version,
        )
    )
    session.commit()
    return True


def note_waiting(
    session: Session, *, task_id: str, reason: Reason, message: str
) -> None:
    """Say why a Pending task waits, where that changed (no transition: the phase stays)."""
    statement = (
        update(Task)
        .where(col(Task.id) == task_id, col(Task.phase) == Phase.PENDING)
        .where((col(Task.reason) != reason) | (col(Task.message) != message))
        .values(reason=reason, message=message, resource_version=Task.resource_version + 1)
    )
    session.execute(statement)
