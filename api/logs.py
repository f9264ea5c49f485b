"""GET /tasks/{id}/logs: a task's stdout and stderr as Server-Sent Events, live with `follow`.

The controller appends output chunks to the database as the container prints; this route
replays them in order (`id:` = the chunk's seq, resumable with `Last-Event-ID`) and, with
`follow=true`, waits for more until the task is terminal, then sends an `end` event (a stream
whose token is revoked ends without one). Chunks of long-finished tasks are compacted away;
their output then comes from the task's final stdout and stderr.
"""

import asyncio
import codecs
import json
from collections.abc import AsyncIterator
from typing import Annotated, Literal

from fastapi import APIRouter, Header, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from sqlmodel import col, select
from starlette.concurrency import run_in_threadpool

from api.auth import Caller, CallerDep
from api.deps import MAX_SEQ, SEQ_HEADER_SCHEMA, DatabaseDep, parse_seq
from api.errors import error_responses
from api.watch import TransitionFeed
from models.clock import isoformat_z
from models.database import Database
from models.phases import TERMINAL_PHASES
from models.tables import OutputChunk, Task

router = APIRouter()

BATCH = 200
Stream = Literal["stdout", "stderr"]


def read_task(database: Database, task_id: str) -> Task | None:
    with database.read() as session:
        return session.exec(select(Task).where(Task.id == task_id)).first()


def read_chunks(
    database: Database, task_id: str, attempt: int, after: int, stream: Stream | None
) -> list[OutputChunk]:
    with database.read() as session:
        statement = select(OutputChunk).where(
            OutputChunk.task_id == task_id,
            OutputChunk.attempt == attempt,
            col(OutputChunk.seq) > after,
        )
        if stream is not None:
            statement = statement.where(OutputChunk.stream == stream)
        return list(session.exec(statement.order_by(col(OutputChunk.seq)).limit(BATCH)))


def _chunks_before(database: Database, task: Task, seq: int) -> list[OutputChunk]:
    """The last few chunks of each stream at or before `seq`, oldest first: enough to hold
    the first bytes of a character (at most 3) cut by the resume point."""
    with database.read() as session:
        rows: list[OutputChunk] = []
        for name in ("stdout", "stderr"):
            rows += reversed(
                list(
                    session.exec(
                        select(OutputChunk)
                        .where(
                            OutputChunk.task_id == task.id,
                            OutputChunk.attempt == task.attempt,
                            OutputChunk.stream == name,
                            col(OutputChunk.seq) <= seq,
                        )
                        .order_by(col(OutputChunk.seq).desc())
                        .limit(3)
                    )
                )
            )
        return rows


def _event(kind: str, payload: dict[str, object], event_id: int | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {kind}\ndata: {json.dumps(payload, ensure_ascii=False)}\n\n".encode()


def _end(task: Task) -> bytes:
    return _event(
        "end",
        {
            "phase": task.phase,
            "reason": task.reason,
            "exit_code": task.exit_code,
            "stdout_truncated": task.stdout_truncated,
            "stderr_truncated": task.stderr_truncated,
        },
    )


async def _either(first: asyncio.Event, second: asyncio.Event, timeout: float) -> bool:
    """Wait until one of the events is set; False where `timeout` passed first."""
    waits = [asyncio.ensure_future(first.wait()), asyncio.ensure_future(second.wait())]
    try:
        done, _ = await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
    return bool(done)


async def _stream(
    request: Request,
    caller: Caller,
    database: Database,
    task: Task,
    after: int,
    stream: Stream | None,
    follow: bool,
    heartbeat: float,
) -> AsyncIterator[bytes]:
    with request.app.state.streams.hold(caller) as revoked:
        async for event in _events(
            request, revoked, database, task, after, stream, follow, heartbeat
        ):
            yield event


async def _events(
    request: Request,
    revoked: asyncio.Event,
    database: Database,
    task: Task,
    after: int,
    stream: Stream | None,
    follow: bool,
    heartbeat: float,
) -> AsyncIterator[bytes]:
    feed: TransitionFeed = request.app.state.feed
    decoders = {
        name: codecs.getincrementaldecoder("utf-8")("replace") for name in ("stdout", "stderr")
    }
    if after:
        # A resume may fall between the bytes of one character: feed each stream's chunk
        # before the resume point to its decoder, so the rest of the character decodes whole.
        for row in await run_in_threadpool(_chunks_before, database, task, after):
            decoders[row.stream].decode(row.data)
    last, sent_any = after, after > 0
    while not revoked.is_set():
        changed = feed.changed()  # taken before reading, so no commit slips between
        rows = await run_in_threadpool(read_chunks, database, task.id, task.attempt, last, stream)
        for row in rows:
            last = row.seq or last
            sent_any = True
            text = decoders[row.stream].decode(row.data)
            yield _event(
                "output",
                {"seq": row.seq, "stream": row.stream, "text": text, "at": isoformat_z(row.at)},
                row.seq,
            )
        if len(rows) == BATCH:
            continue
        fresh = await run_in_threadpool(read_task, database, task.id)
        if fresh is None:
            return
        if fresh.phase in TERMINAL_PHASES:
            # The controller stores every chunk before it records the ending, so one more
            # read after seeing the ending misses nothing.
            rows = await run_in_threadpool(
                read_chunks, database, task.id, task.attempt, last, stream
            )
            if rows:
                continue
            for name, decoder in decoders.items():
                tail = decoder.decode(b"", final=True)  # an incomplete character at the end
                if tail and sent_any:
                    yield _event(
                        "output",
                        {
                            "seq": None,
                            "stream": name,
                            "text": tail,
                            "at": isoformat_z(fresh.finished_at),
                        },
                    )
            if not sent_any:  # compacted away, or never streamed: the final output stands
                for name, final in (("stdout", fresh.stdout), ("stderr", fresh.stderr)):
                    if final and stream in (None, name):
                        yield _event(
                            "output",
                            {
                                "seq": None,
                                "stream": name,
                                "text": final,
                                "at": isoformat_z(fresh.finished_at),
                            },
                        )
            yield _end(fresh)
            return
        if not follow:
            return
        if not await _either(changed, revoked, heartbeat):
            if await request.is_disconnected():
                return
            yield b": keepalive\n\n"


@router.get(
    "/tasks/{task_id}/logs",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}, **error_responses(401, 404, 422, 503)},
)
async def task_logs(
    request: Request,
    task_id: str,
    database: DatabaseDep,
    caller: CallerDep,
    follow: bool = False,
    stream: Stream | None = None,
    since: Annotated[int | None, Query(ge=0, le=MAX_SEQ)] = None,
    last_event_id: Annotated[str | None, Header(json_schema_extra=SEQ_HEADER_SCHEMA)] = None,
) -> StreamingResponse:
    """Stream the task's output; with `follow`, live until the task is terminal."""
    if last_event_id is not None:
        since = parse_seq(last_event_id, "an output chunk seq")
    task = await run_in_threadpool(read_task, database, task_id)
    if task is None or not caller.sees(task):
        raise HTTPException(404, f"task {task_id} not found")
    await request.app.state.feed.ready.wait()
    heartbeat = request.app.state.settings.watch_heartbeat_seconds
    return StreamingResponse(
        _stream(request, caller, database, task, since or 0, stream, follow, heartbeat),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
