"""Guarded status writes: every phase change is `UPDATE … WHERE id = ? AND phase = ? AND
attempt = ?`, and commits together with its transition record, or not at all.

A second controller, a crash and replay, or an API write in between can therefore never move a
task twice: the losing writer sees zero rows and leaves the task alone.
"""

from datetime import datetime
from typing import Any

from sqlalchemy import Table, bindparam, update
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
        .where(
            col(Task.id) == task_id, col(Task.phase) == from_phase, col(Task.attempt) == at_attempt
        )
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


def note_waiting(session: Session, *, reason: Reason, messages: dict[str, str]) -> None:
    """Say why Pending tasks wait (task id -> message), for those where that changed; no
    transition, the phase stays. One statement, executed for each task."""
    if not messages:
        return
    table: Table = Task.__table__  # type: ignore[attr-defined]
    tasks = table.c
    statement = (
        update(table)
        .where(tasks.id == bindparam("waiting_id"), tasks.phase == Phase.PENDING.value)
        .where(
            (tasks.reason != bindparam("new_reason")) | (tasks.message != bindparam("new_message"))
        )
        .values(
            reason=bindparam("new_reason"),
            message=bindparam("new_message"),
            resource_version=tasks.resource_version + 1,
        )
    )
    session.execute(
        statement,
        [
            {"waiting_id": task_id, "new_reason": reason.value, "new_message": message}
            for task_id, message in messages.items()
        ],
    )
