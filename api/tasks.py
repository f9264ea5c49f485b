"""Task routes: submit (desired state), read, list, cancel (a request), and transitions."""

import asyncio
import contextlib
import time
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response
from pydantic_core import to_json
from sqlalchemy import update
from sqlmodel import Session, col, select
from starlette.concurrency import run_in_threadpool

from api.admission import Admitted, HostLimitsCache, admit, check_fits, check_runtime
from api.auth import Caller, CallerDep
from api.deps import DatabaseDep, JsonBody, PhaseQuery, ReadSession, WriteSession
from api.errors import error_responses
from api.submissions import SubmissionWriter, task_values
from api.watch import TransitionFeed
from models.clock import utcnow
from models.database import Database
from models.fit import HostLimits
from models.phases import TERMINAL_PHASES
from models.schemas import (
    TaskCreate,
    TaskList,
    TaskRead,
    TransitionList,
    TransitionRead,
    task_document,
)
from models.settings import Settings
from models.tables import Task, Transition

router = APIRouter()

MAX_WAIT_SECONDS = 60
WAIT_RECHECK_SECONDS = 1.0
WaitQuery = Annotated[
    float, Query(ge=0, le=MAX_WAIT_SECONDS, description="seconds to wait for a terminal phase")
]


def _get_or_404(session: Session, task_id: str, caller: Caller) -> Task:
    task = session.exec(select(Task).where(Task.id == task_id)).first()
    # Another user's task is as absent as a task that never existed.
    if task is None or not caller.sees(task):
        raise HTTPException(404, f"task {task_id} not found")
    return task


def _read(database: Database, task_id: str) -> Task | None:
    with database.read() as session:
        return session.exec(select(Task).where(Task.id == task_id)).first()


async def _wait_terminal(request: Request, database: Database, task: Task, seconds: float) -> Task:
    """The task once terminal, or as it is when `seconds` have passed."""
    feed: TransitionFeed = request.app.state.feed
    deadline = time.monotonic() + seconds
    with feed.ends_of(task.id) as ended:
        while task.phase not in TERMINAL_PHASES:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            # The feed sees every commit within `watch_poll_seconds`; the timeout only bounds
            # how stale a reading can get should the feed itself stall.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ended.wait(), timeout=min(left, WAIT_RECHECK_SECONDS))
            ended.clear()
            fresh = await run_in_threadpool(_read, database, task.id)
            if fresh is None:
                break
            task = fresh
    return task


# Where a client goes next with the task it just created (also what stateful fuzzing follows).
_TASK_LINKS = {
    name: {
        "operationRef": "#/paths/" + path.replace("/", "~1") + "/" + method,
        "parameters": {"task_id": "$response.body#/id"},
    }
    for name, path, method in (
        ("GetTask", "/tasks/{task_id}", "get"),
        ("CancelTask", "/tasks/{task_id}", "delete"),
        ("TaskEvents", "/tasks/{task_id}/events", "get"),
        ("TaskLogs", "/tasks/{task_id}/logs", "get"),
        ("ResetTask", "/admin/tasks/{task_id}/reset", "post"),
    )
}
_LOCATION = {
    "Location": {
        "description": "The new task's URL",
        "required": True,
        "schema": {"type": "string"},
    }
}


@router.post(
    "/tasks",
    status_code=201,
    response_model=TaskRead,
    dependencies=[JsonBody],
    responses={
        201: {"links": _TASK_LINKS, "headers": _LOCATION},
        **error_responses(401, 413, 415, 422, 429, 503),
    },
)
async def submit_task(
    body: TaskCreate, request: Request, caller: CallerDep, wait: WaitQuery = 0
) -> Response:
    """Store a desired task (phase Pending); with `wait`, return once it is terminal."""
    values = await store_task(request, body, caller)
    if wait:
        database: Database = request.app.state.database
        task = await run_in_threadpool(_read, database, values["id"])
        if task is not None:
            task = await _wait_terminal(request, database, task, wait)
            return _json(
                TaskRead.from_row(task).model_dump_json().encode(),
                201,
                {"Location": f"/tasks/{task.id}"},
            )
    return created(values)


async def store_task(request: Request, body: TaskCreate, caller: Caller) -> dict[str, Any]:
    """Admit the task and store it; its column values once they are committed.

    The route and `api.fast_submit` share it. It takes no thread pool, no session and no ORM
    object: the writer stores the column values, and `created` answers from them."""
    state = request.app.state
    settings: Settings = state.settings
    limits: HostLimitsCache = state.host_limits
    asked = admit(body, settings)
    host = await limits.current()
    values = admitted_values(body, asked, host, owner=caller.user)
    writer: SubmissionWriter = state.submissions
    await writer.insert(values)
    return values


def admitted_values(
    body: TaskCreate, asked: Admitted, host: HostLimits | None, **columns: Any
) -> dict[str, Any]:
    """The new row's column values (`task_values`) of a task that `admit` let in, once its
    runtime and size are checked against the host (422 naming the field where they do not
    fit); `columns` adds the ones the request does not carry (`owner`, `batch_id`)."""
    check_runtime(body.runtime, host)
    check_fits(asked, host)
    resources = body.resources
    return task_values(
        **columns,
        task_type=body.task_type.value,
        code=body.code,
        cpu=asked.cpu,
        cpu_text=resources.cpu,
        gpu=asked.gpu,
        gpu_text=resources.gpu,
        ram=resources.ram,
        ram_bytes=asked.ram_bytes,
        storage=resources.storage,
        storage_bytes=asked.storage_bytes,
        timeout_seconds=asked.timeout,
        stdin=body.stdin,
        interactive=body.interactive,
        runtime=body.runtime,
        files=[file.model_dump() for file in body.files],
        args=body.args,
        env=body.env,
        collect=body.collect,
    )


def created(values: dict[str, Any]) -> Response:
    """The 201 for a task just stored with these column values: the Task object, as
    GET /tasks/{id} would answer it, byte for byte."""
    return _json(
        to_json(task_document(values.__getitem__)), 201, {"Location": f"/tasks/{values['id']}"}
    )


def _json(content: bytes, status_code: int, headers: dict[str, str]) -> Response:
    return Response(
        content, status_code=status_code, headers=headers, media_type="application/json"
    )


@router.get(
    "/tasks/{task_id}", response_model=TaskRead, responses=error_responses(401, 404, 422, 503)
)
async def get_task(
    task_id: str, request: Request, database: DatabaseDep, caller: CallerDep, wait: WaitQuery = 0
) -> TaskRead:
    """Read one task; with `wait`, wait up to that many seconds for a terminal phase."""
    task = await run_in_threadpool(_read, database, task_id)
    if task is None or not caller.sees(task):
        raise HTTPException(404, f"task {task_id} not found")
    if wait:
        task = await _wait_terminal(request, database, task, wait)
    return TaskRead.from_row(task)


@router.get("/tasks", response_model=TaskList, responses=error_responses(401, 422, 503))
def list_tasks(
    session: ReadSession,
    caller: CallerDep,
    phase: PhaseQuery = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(pattern=r"^[0-9]+$", max_length=18)] = None,
    batch: Annotated[str | None, Query(max_length=64, description="only this batch's")] = None,
    id_prefix: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=64,
            description="only tasks whose id starts with this (case-sensitive)",
        ),
    ] = None,
) -> TaskList:
    """List tasks, newest first, a page at a time."""
    statement = select(Task).order_by(col(Task.pk).desc()).limit(limit + 1)
    if phase is not None:
        statement = statement.where(Task.phase == phase.value)
    if batch is not None:
        statement = statement.where(col(Task.batch_id) == batch)
    if id_prefix is not None:
        # A range rather than LIKE: it uses the id's index, and `%` or `_` mean themselves.
        statement = statement.where(col(Task.id) >= id_prefix)
        statement = statement.where(col(Task.id) < id_prefix + "\U0010ffff")
    if cursor is not None:
        statement = statement.where(col(Task.pk) < int(cursor))
    if caller.user is not None:
        statement = statement.where(col(Task.owner) == caller.user)
    rows = list(session.exec(statement))
    page = rows[:limit]
    next_cursor = str(page[-1].pk) if len(rows) > limit and page else None
    return TaskList(items=[TaskRead.from_row(t) for t in page], next_cursor=next_cursor)


@router.delete(
    "/tasks/{task_id}",
    status_code=202,
    response_model=TaskRead,
    responses=error_responses(401, 404, 409, 422, 503),
)
def cancel_task(task_id: str, session: WriteSession, caller: CallerDep) -> TaskRead:
    """Record a cancellation request; the controller stops the task."""
    task = _get_or_404(session, task_id, caller)
    if task.phase in TERMINAL_PHASES:
        raise HTTPException(409, f"task {task_id} is already {task.phase}; nothing to cancel")
    if task.cancel_requested_at is None:
        session.execute(
            update(Task)
            .where(col(Task.id) == task_id, col(Task.cancel_requested_at).is_(None))
            .values(cancel_requested_at=utcnow(), resource_version=Task.resource_version + 1)
        )
        session.commit()
        task = _get_or_404(session, task_id, caller)
    return TaskRead.from_row(task)


@router.get(
    "/tasks/{task_id}/events",
    response_model=TransitionList,
    responses=error_responses(401, 404, 422, 503),
)
def task_events(task_id: str, session: ReadSession, caller: CallerDep) -> TransitionList:
    """The task's phase transitions, oldest first."""
    _get_or_404(session, task_id, caller)
    rows = session.exec(
        select(Transition).where(Transition.task_id == task_id).order_by(col(Transition.seq))
    )
    return TransitionList(items=[TransitionRead.from_row(row) for row in rows])
