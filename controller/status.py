"""Guarded status writes: every phase change is `UPDATE … WHERE id = ? AND phase = ? AND
attempt = ?`, and commits together with its transition record, or not at all.

A second controller, a crash and replay, or an API write in between can therefore never move a
task twice: the losing writer sees zero rows and leaves the task alone. `move` is the one
statement; the functions after it are the moves `controller.act` makes, each from the phase and
attempt of the `TaskRecord` it is given.
"""

import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, bindparam, update
from sqlmodel import Session, col

from controller.observe import TaskRecord
from controller.reconcile import Outcome
from models.database import Database
from models.phases import Phase, Reason
from models.tables import Task, Transition, next_attempt

log = logging.getLogger("taskyard.controller")


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


def mark_running(
    database: Database, task: TaskRecord, started_at: datetime, *, now: datetime
) -> TaskRecord | None:
    """Move Scheduled to Running, its deadline counted from `started_at`; the task as it now
    stands, None where it was no longer there."""
    deadline = started_at + timedelta(seconds=task.timeout_seconds)
    with database.write() as session:
        moved = move(
            session,
            now=now,
            task_id=task.id,
            from_phase=Phase.SCHEDULED,
            at_attempt=task.attempt,
            to_phase=Phase.RUNNING,
            reason=Reason.STARTED,
            message=f"container started; deadline in {task.timeout_seconds} s",
            started_at=started_at,
            deadline_at=deadline,
        )
    if not moved:
        return None
    return replace(task, phase=Phase.RUNNING, started_at=started_at, deadline_at=deadline)


def end(
    database: Database,
    task: TaskRecord,
    phase: Phase,
    reason: Reason,
    message: str,
    result: str,
    *,
    now: datetime,
) -> bool:
    """End a task that has no container output to judge."""
    with database.write() as session:
        return move(
            session,
            now=now,
            task_id=task.id,
            from_phase=task.phase,
            at_attempt=task.attempt,
            to_phase=phase,
            reason=reason,
            message=message,
            result=result,
            finished_at=now,
        )


def requeue(
    database: Database, task: TaskRecord, reason: Reason, message: str, *, now: datetime
) -> bool:
    """Send a task back to Pending as its next attempt, its slots freed."""
    with database.write() as session:
        return move(
            session,
            now=now,
            task_id=task.id,
            from_phase=task.phase,
            at_attempt=task.attempt,
            to_phase=Phase.PENDING,
            reason=reason,
            message=message,
            **next_attempt(task.attempt),
        )


def record_outcome(
    database: Database, task: TaskRecord, outcome: Outcome, finished_at: datetime, *, now: datetime
) -> bool:
    """Write how the task ended, as `reconcile.judge` said."""
    with database.write() as session:
        return move(
            session,
            now=now,
            task_id=task.id,
            from_phase=task.phase,
            at_attempt=task.attempt,
            to_phase=outcome.phase,
            reason=outcome.reason,
            message=outcome.message,
            result=outcome.result,
            exit_code=outcome.exit_code,
            stdout=outcome.stdout,
            stderr=outcome.stderr,
            stdout_truncated=outcome.stdout_truncated,
            stderr_truncated=outcome.stderr_truncated,
            finished_at=finished_at,
        )


def record_stuck(
    database: Database, changes: Sequence[tuple[TaskRecord, str | None]], at: datetime
) -> None:
    """Write down which tasks make no progress and why (None: moving again); no phase
    changes, so no transition."""
    with database.write() as session:
        for task, why in changes:
            session.execute(
                update(Task)
                .where(col(Task.id) == task.id, col(Task.phase) == task.phase)
                .values(
                    stuck_reason=why,
                    stuck_since=at if why else None,
                    resource_version=Task.resource_version + 1,
                )
            )
            if why:
                log.warning("task %s is stuck: %s", task.id, why, extra={"task_id": task.id})
        session.commit()
