"""WS /tasks/{id}/attach: talk to a task submitted with `"interactive": true`.

Messages are modelled on Piston's /api/v2/connect. The client sends
`{"type": "data", "stream": "stdin", "data": "..."}` and, to close the task's stdin,
`{"type": "eof"}`. The server sends `{"type": "data", "stream": "stdout"|"stderr",
"data": "..."}` as the task prints, then `{"type": "exit", "code": N, "phase": ..., "reason":
...}`, or `{"type": "error", "message": ...}`. A caller refused, or whose token is revoked
while attached, gets an error and the close code 4401. The API still never touches the engine:
stdin is written to the database and the controller passes it on (and deletes what it passed
on); output comes from the chunks the controller stored. The task's timeout applies as always.
At most `MAX_WAITING_INPUT_BYTES` of a task's input may wait in the database: beyond that the
task is not reading its stdin, and a data message gets an `error` reply instead of being stored.
"""

import asyncio
import codecs
import contextlib
import json
from typing import Any

from fastapi import APIRouter, HTTPException, WebSocket, WebSocketDisconnect
from sqlalchemy import func, select
from sqlmodel import col
from starlette.concurrency import run_in_threadpool

from api.auth import CALLER_KEY, identify
from api.logs import read_chunks, read_task
from api.streams import StreamRegistry
from api.watch import TransitionFeed
from models.database import Database
from models.phases import TERMINAL_PHASES
from models.quantities import format_size
from models.tables import InputChunk

router = APIRouter()

MAX_INPUT_CHARS = 64 * 1024
# Input stored and not yet passed on to the task, per task: the controller passes input on as
# fast as the task reads it, so input waits only while the task does not read.
MAX_WAITING_INPUT_BYTES = 1024 * 1024
REFUSED_INPUT = (
    f"input refused: {format_size(MAX_WAITING_INPUT_BYTES)} of input already "
    "waits for this task, which is not reading its stdin; send it again later"
)


def _store_input(database: Database, task_id: str, data: bytes, eof: bool) -> bool:
    """Store a piece of input; False (and nothing stored) where too much waits already."""
    with database.write() as session:  # BEGIN IMMEDIATE: the sum cannot change under us
        waiting = session.execute(
            select(func.coalesce(func.sum(func.length(col(InputChunk.data))), 0)).where(
                col(InputChunk.task_id) == task_id
            )
        ).scalar_one()
        if data and waiting + len(data) > MAX_WAITING_INPUT_BYTES:
            return False
        session.add(InputChunk(task_id=task_id, data=data, eof=eof))
        session.commit()
        return True


async def _send_output(
    websocket: WebSocket, database: Database, feed: TransitionFeed, task_id: str, attempt: int
) -> None:
    decoders = {
        name: codecs.getincrementaldecoder("utf-8")("replace") for name in ("stdout", "stderr")
    }
    last = 0
    while True:
        changed = feed.changed()
        rows = await run_in_threadpool(read_chunks, database, task_id, attempt, last, None)
        for row in rows:
            last = row.seq or last
            await websocket.send_json(
                {
                    "type": "data",
                    "stream": row.stream,
                    "data": decoders[row.stream].decode(row.data),
                }
            )
        if rows:
            continue
        task = await run_in_threadpool(read_task, database, task_id)
        if task is None:
            await websocket.send_json({"type": "error", "message": "the task was removed"})
            return
        if task.phase in TERMINAL_PHASES:
            if await run_in_threadpool(read_chunks, database, task_id, attempt, last, None):
                continue  # the last chunks landed together with the ending
            await websocket.send_json(
                {
                    "type": "exit",
                    "code": task.exit_code,
                    "phase": task.phase,
                    "reason": task.reason,
                    "message": task.message,
                }
            )
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), timeout=15)


async def _receive_input(websocket: WebSocket, database: Database, task_id: str) -> None:
    closed = False
    while True:
        try:
            message: Any = json.loads(await websocket.receive_text())
        except ValueError:
            message = None
        kind = message.get("type") if isinstance(message, dict) else None
        if closed and kind in {"data", "eof"}:
            await websocket.send_json({"type": "error", "message": "stdin is already closed"})
        elif (
            kind == "data"
            and message.get("stream", "stdin") == "stdin"
            and isinstance(message.get("data"), str)
            and len(message["data"]) <= MAX_INPUT_CHARS
        ):
            data = message["data"].encode("utf-8", "replace")
            if not await run_in_threadpool(_store_input, database, task_id, data, False):
                await websocket.send_json({"type": "error", "message": REFUSED_INPUT})
        elif kind == "eof":
            closed = True
            await run_in_threadpool(_store_input, database, task_id, b"", True)
        else:
            await websocket.send_json(
                {
                    "type": "error",
                    "message": 'expected {"type": "data", "stream": "stdin", "data": "<text up to '
                    f'{MAX_INPUT_CHARS} characters>"}} or {{"type": "eof"}}',
                }
            )


@router.websocket("/tasks/{task_id}/attach")
async def attach(websocket: WebSocket, task_id: str) -> None:
    """Send stdin to an interactive task and receive its output and exit."""
    database: Database = websocket.app.state.database
    feed: TransitionFeed = websocket.app.state.feed
    await websocket.accept()
    header = websocket.headers.get("authorization", "")
    token = header[7:] if header.lower().startswith("bearer ") else None
    try:
        caller = await run_in_threadpool(
            lambda: identify(
                token,
                admin_token=websocket.app.state.admin_token,
                settings=websocket.app.state.settings,
                database=database,
                tokens=websocket.app.state.active_tokens,
            )
        )
    except HTTPException as exc:
        await websocket.send_json({"type": "error", "message": str(exc.detail)})
        await websocket.close(code=4401)
        return
    websocket.scope[CALLER_KEY] = caller  # for the access log
    task = await run_in_threadpool(read_task, database, task_id)
    if task is not None and not caller.sees(task):
        task = None  # only the task's owner (or the admin) may attach
    if task is None or not task.interactive:
        why = (
            f"task {task_id} not found"
            if task is None
            else 'this task was not submitted with "interactive": true'
        )
        await websocket.send_json({"type": "error", "message": why})
        await websocket.close(code=4404 if task is None else 4400)
        return
    await feed.ready.wait()
    streams: StreamRegistry = websocket.app.state.streams
    with streams.hold(caller) as revoked:
        sender = asyncio.create_task(_send_output(websocket, database, feed, task_id, task.attempt))
        receiver = asyncio.create_task(_receive_input(websocket, database, task_id))
        ended = asyncio.create_task(revoked.wait())
        done, pending = await asyncio.wait(
            {sender, receiver, ended}, return_when=asyncio.FIRST_COMPLETED
        )
    for job in pending:
        job.cancel()
        with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect):
            await job
    for job in done:
        with contextlib.suppress(WebSocketDisconnect):
            job.result()
    with contextlib.suppress(RuntimeError, WebSocketDisconnect):
        if ended in done:
            await websocket.send_json({"type": "error", "message": "this token was revoked"})
            await websocket.close(code=4401, reason="token revoked")
        elif sender in done:
            await websocket.close()
