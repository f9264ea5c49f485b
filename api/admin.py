"""Admin routes: capacity and who holds what, stuck tasks, and reset requests.

A reset is only recorded here; the controller stops the container, frees the slots and moves
the task, recording an `AdminReset` transition.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException
from sqlalchemy import update
from sqlmodel import Session, col, select

from api.auth import AdminOnly, Caller, CallerDep
from api.deps import JsonBody, ReadSession, SettingsDep, WriteSession
from api.errors import error_responses
from models.clock import as_utc, isoformat_z, utcnow
from models.phases import ACTIVE_PHASES, TERMINAL_PHASES, Phase, Reason
from models.schemas import ResetRequest, StuckList, StuckTask, TaskRead
from models.tables import Capacity, Task, Transition

router = APIRouter(
    prefix="/admin", dependencies=[AdminOnly], responses=error_responses(401, 403, 503)
)
# The same capacity view for any caller: without a token in open mode, where every task is
# visible anyway; a user sees which cores and GPUs are held, but only their own tasks' ids.
public_router = APIRouter(responses=error_responses(401, 503))


def _active(session: Session) -> list[Task]:
    statement = select(Task).where(col(Task.phase).in_([p.value for p in ACTIVE_PHASES]))
    return list(session.exec(statement.order_by(col(Task.pk))))


@public_router.get("/capacity")
def public_capacity(session: ReadSession, caller: CallerDep) -> dict[str, Any]:
    """As /admin/capacity; for a user, another user's task that holds a slot shows as null."""
    return _capacity(session, caller)


@router.get("/capacity")
def capacity(session: ReadSession) -> dict[str, Any]:
    """Allocatable, allocated and free per resource, and which task holds which CPU and GPU."""
    return _capacity(session, Caller(is_admin=True))


def _capacity(session: Session, caller: Caller) -> dict[str, Any]:
    row = session.get(Capacity, "local")
    if row is None:
        raise HTTPException(
            503,
            "the controller has not reported the host's capacity yet",
            headers={"Retry-After": "1"},
        )
    holders: dict[str, dict[str, list[str | None]]] = {"cpus": {}, "gpus": {}}
    ram = storage = 0
    for task in _active(session):
        if task.phase == Phase.PENDING:
            continue
        ram += task.ram_bytes
        storage += task.storage_bytes
        shown = task.id if caller.sees(task) else None
        for cpu in task.assigned_cpus:
            holders["cpus"].setdefault(str(cpu), []).append(shown)
        for gpu in task.assigned_gpus:
            holders["gpus"].setdefault(str(gpu), []).append(shown)
    cpus_held = len(holders["cpus"])
    gpu_slots = len(row.gpu_ids) * row.gpu_sharing
    gpus_held = sum(len(ids) for ids in holders["gpus"].values())

    def resource(allocatable: int, allocated: int) -> dict[str, int]:
        return {
            "allocatable": allocatable,
            "allocated": allocated,
            "free": max(0, allocatable - allocated),
        }

    return {
        "cpu": resource(len(row.cpu_ids), cpus_held) | {"ids": row.cpu_ids},
        "gpu": resource(gpu_slots, gpus_held)
        | {"ids": row.gpu_ids, "names": row.gpu_names, "sharing": row.gpu_sharing},
        "ram": resource(row.ram_allocatable, ram) | {"total": row.ram_total},
        "storage": resource(row.storage_allocatable, storage) | {"total": row.storage_total},
        "holders": holders,
        "reported_at": isoformat_z(row.heartbeat_at),
    }


@router.get("/tasks/stuck", response_model=StuckList)
def stuck_tasks(session: ReadSession, settings: SettingsDep) -> StuckList:
    """Non-terminal tasks that make no progress, each with why (as the controller recorded)."""
    row = session.get(Capacity, "local")
    now = utcnow()
    silent_for = (
        None
        if row is None or row.heartbeat_at is None
        else (now - as_utc(row.heartbeat_at)).total_seconds()
    )
    controller_down = silent_for is None or silent_for > settings.controller_stale_seconds
    controller = {
        "ok": not controller_down,
        "last_pass_at": isoformat_z(row.heartbeat_at) if row else None,
    }
    items = []
    for task in _active(session):
        if task.stuck_reason:
            items.append(
                StuckTask(
                    task_id=task.id,
                    phase=task.phase,
                    why=task.stuck_reason,
                    since=isoformat_z(task.stuck_since),
                )
            )
        elif controller_down:
            since = row.heartbeat_at if row and row.heartbeat_at else None
            items.append(
                StuckTask(
                    task_id=task.id,
                    phase=task.phase,
                    why="no controller is running: the last reconcile pass was "
                    + (f"{silent_for:.0f} s ago" if silent_for is not None else "never"),
                    since=isoformat_z(since),
                )
            )
    return StuckList(items=items, controller=controller)


def _already_done(session: Session, task: Task, to: str) -> bool:
    last = session.exec(
        select(Transition)
        .where(Transition.task_id == task.id)
        .order_by(col(Transition.seq).desc())
        .limit(1)
    ).first()
    return (
        last is not None
        and last.reason == Reason.ADMIN_RESET
        and last.to_phase == to
        and task.phase == to
    )


@router.post(
    "/tasks/{task_id}/reset",
    response_model=TaskRead,
    dependencies=[JsonBody],
    responses=error_responses(404, 409, 413, 415, 422),
)
def reset_task(
    task_id: str,
    session: WriteSession,
    request: Annotated[ResetRequest | None, Body()] = None,
) -> TaskRead:
    """Record a reset (requeue or fail) for the controller to carry out."""
    body = request or ResetRequest()
    to = body.to
    task = session.exec(select(Task).where(Task.id == task_id)).first()
    if task is None:
        raise HTTPException(404, f"task {task_id} not found")
    if body.attempt is not None and task.attempt != body.attempt:
        raise HTTPException(
            409,
            f"the task is at attempt {task.attempt}, not {body.attempt}: "
            "it was requeued since; nothing was done",
        )
    if task.reset_requested_to == to or _already_done(session, task, to):
        return TaskRead.from_row(task)  # sent twice: the first request stands
    if task.reset_requested_to is not None:
        raise HTTPException(409, f"a reset to {task.reset_requested_to} is already pending")
    if to == "Pending" and task.phase == Phase.PENDING:
        raise HTTPException(409, "the task is already Pending; there is nothing to requeue")
    if to == "Failed" and task.phase in TERMINAL_PHASES:
        raise HTTPException(
            409, f"the task already ended ({task.phase}); only a requeue (to Pending) applies"
        )
    session.execute(
        update(Task)
        .where(col(Task.id) == task_id, col(Task.reset_requested_to).is_(None))
        .values(
            reset_requested_to=to,
            reset_requested_at=utcnow(),
            resource_version=Task.resource_version + 1,
        )
    )
    session.commit()
    fresh = session.exec(select(Task).where(Task.id == task_id)).one()
    return TaskRead.from_row(fresh)
