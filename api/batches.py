"""Batch routes: submit up to `MAX_BATCH_TASKS` tasks in one request, read where the batch
stands, cancel it. A batch is its tasks' `batch_id`, not a row of its own: its tasks are stored
in one commit, with one owner and one creation time, and never deleted, so the tasks say all
there is to say about it. `GET /tasks?batch=` lists them and `GET /watch?batch=` follows them.

The batch is validated all or nothing: FastAPI's validation names the item in `loc`
(`["body", "tasks", 17, "resources", "cpu"]`), and so does admission here, for every item it
refuses; then the submission writer stores every task, or none, in one transaction.
"""

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Request, Response
from pydantic_core import to_json
from sqlalchemy import func, update
from sqlmodel import Session, col, select

from api.admission import admit
from api.auth import Caller, CallerDep
from api.deps import JsonBody, ReadSession, WriteSession
from api.errors import error_responses, field_error
from api.submissions import SubmissionWriter
from api.tasks import admitted_values
from models.clock import isoformat_z, utcnow
from models.phases import TERMINAL_PHASES, Phase
from models.schemas import BatchCreate, BatchCreated, BatchRead
from models.settings import Settings
from models.tables import Task

router = APIRouter()

BatchId = Annotated[str, Path(max_length=64)]

_LOCATION = {
    "Location": {
        "description": "The new batch's URL",
        "required": True,
        "schema": {"type": "string"},
    }
}


@router.post(
    "/batches",
    status_code=201,
    response_model=BatchCreated,
    dependencies=[JsonBody],
    responses={
        201: {"headers": _LOCATION},
        **error_responses(401, 413, 415, 422, 429, 503),
    },
)
async def submit_batch(body: BatchCreate, request: Request, caller: CallerDep) -> Response:
    """Store up to 1000 desired tasks in one commit, all or none; their ids in order."""
    state = request.app.state
    settings: Settings = state.settings
    host = await state.host_limits.current()
    batch_id = uuid.uuid4().hex
    created_at = utcnow()
    rows: list[dict[str, Any]] = []
    refused: list[tuple[int, HTTPException]] = []
    for index, task in enumerate(body.tasks):
        try:
            rows.append(
                admitted_values(
                    task,
                    admit(task, settings),
                    host,
                    owner=caller.user,
                    batch_id=batch_id,
                    created_at=created_at,
                )
            )
        except HTTPException as exc:
            refused.append((index, exc))
    if refused:
        raise _refusal(refused)
    writer: SubmissionWriter = state.submissions
    await writer.insert_many(rows)
    task_ids = [row["id"] for row in rows]
    return Response(
        to_json({"id": batch_id, "task_ids": task_ids, "count": len(task_ids)}),
        status_code=201,
        headers={"Location": f"/batches/{batch_id}"},
        media_type="application/json",
    )


def _refusal(refused: list[tuple[int, HTTPException]]) -> HTTPException:
    """One answer for every refused item, each error's `loc` naming the item; its status is
    the first refused item's (413 for a size, 422 for the rest)."""
    errors: list[dict[str, Any]] = []
    for index, exc in refused:
        if isinstance(exc.detail, list):
            for error in exc.detail:
                loc = error["loc"]
                errors.append({**error, "loc": ["body", "tasks", index, *loc[1:]]})
        else:
            errors.append(field_error(["body", "tasks", index], str(exc.detail), "refused"))
    return HTTPException(refused[0][1].status_code, errors)


def _summary(session: Session, batch_id: str, caller: Caller) -> BatchRead:
    """Where the batch stands; 404 where it does not exist or is another user's."""
    statement = (
        select(
            Task.phase,
            func.count(),
            func.count(col(Task.cancel_requested_at)),
            func.min(Task.created_at),
        )
        .where(col(Task.batch_id) == batch_id)
        .group_by(col(Task.phase))
    )
    if caller.user is not None:
        statement = statement.where(col(Task.owner) == caller.user)
    rows = list(session.exec(statement))
    if not rows:
        raise HTTPException(404, f"batch {batch_id} not found")
    phases = {phase.value: 0 for phase in Phase}
    cancel_requested = 0
    for phase, count, cancels, _ in rows:
        phases[phase] = count
        cancel_requested += cancels
    return BatchRead(
        id=batch_id,
        created_at=isoformat_z(min(row[3] for row in rows)) or "",
        count=sum(phases.values()),
        done=sum(phases[phase.value] for phase in TERMINAL_PHASES),
        phases=phases,
        cancel_requested=cancel_requested,
    )


@router.get(
    "/batches/{batch_id}", response_model=BatchRead, responses=error_responses(401, 404, 422, 503)
)
def get_batch(batch_id: BatchId, session: ReadSession, caller: CallerDep) -> BatchRead:
    """Where a batch stands: its tasks counted by phase, and how many are done."""
    return _summary(session, batch_id, caller)


@router.delete(
    "/batches/{batch_id}",
    status_code=202,
    response_model=BatchRead,
    responses=error_responses(401, 404, 422, 503),
)
def cancel_batch(batch_id: BatchId, session: WriteSession, caller: CallerDep) -> BatchRead:
    """Record a cancellation request on each of the batch's unfinished tasks."""
    _summary(session, batch_id, caller)  # 404 before anything is written
    statement = update(Task).where(
        col(Task.batch_id) == batch_id,
        col(Task.phase).not_in([phase.value for phase in TERMINAL_PHASES]),
        col(Task.cancel_requested_at).is_(None),
    )
    if caller.user is not None:
        statement = statement.where(col(Task.owner) == caller.user)
    session.execute(
        statement.values(cancel_requested_at=utcnow(), resource_version=Task.resource_version + 1)
    )
    session.commit()
    return _summary(session, batch_id, caller)
