"""GET /watch: Server-Sent Events of phase transitions, resumable without gap or duplicate.

One `TransitionFeed` per API process polls a number that moves at every commit by anyone
(`Database.commit_watch`: SQLite's `data_version`, a few microseconds, every
`watch_poll_seconds`; on Postgres a count of `NOTIFY`s, each of which also wakes the feed at
once, so every API process hears every other's commits) and, when it moved, reads the new
transitions once and hands them to every watcher's bounded queue. Seqs are committed in
increasing order on both stores (`models.postgres` says how), so reading `seq > last` misses
nothing, in one process or across several and their restarts. A watcher first subscribes, then
replays what it missed from the database, then follows the feed, skipping anything at or below
the last `seq` it sent. A watcher that falls behind (its queue overflows) is not dropped: it
catches up from the database, so a slow client costs the server one bounded queue and nothing
more.

A transition reaches every watcher of the process, so what one watcher costs per transition is
what a fan-out to a thousand costs a thousand times over. Hence the stream is a plain ASGI
response that hands its frames to the server's `send` itself (no body generator, no task group
around it); the heartbeat is the feed's one timer for all watchers, not one per watcher and per
wait; and the feed wakes its watchers a slice at a time, looking for newer transitions between
slices, so that moves which come in the middle of a fan-out join it rather than queue behind it.

A watch on a batch (`?batch=`) sends only its tasks' transitions, from the batch's first one
unless told where to resume, and ends once every task of the batch is terminal: which ones
were unfinished is read with the latest seq in one snapshot, and each transition after it
keeps that set up to date.
"""

import asyncio
import contextlib
import json
import logging
import sqlite3
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Query, Request
from fastapi.responses import Response, StreamingResponse
from sqlalchemy import func
from sqlmodel import col, select
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from api.auth import Caller, CallerDep
from api.deps import MAX_SEQ, SEQ_HEADER_SCHEMA, DatabaseDep, PhaseQuery, parse_seq
from api.errors import error_responses
from api.streams import StreamRegistry
from models.database import Database
from models.phases import TERMINAL_PHASES, Phase
from models.schemas import TransitionRead
from models.tables import TRANSITIONS_COMPACTED_THROUGH, Meta, Task, Transition

router = APIRouter()
log = logging.getLogger("taskyard.api")

QUEUE_SIZE = 1024
REPLAY_BATCH = 500
# How many watchers the feed wakes before it looks for newer transitions again. A fan-out to a
# thousand watchers takes tens of milliseconds; a task's next move often comes within it, and
# the watchers not yet woken then send both moves in one write instead of one round each.
WAKE_SLICE = 100
# How often the feed tries again to read new transitions after the storage failed it.
FEED_RETRY_SECONDS = 1.0


@dataclass(eq=False)
class Subscriber:
    # Each event with its SSE frame, encoded once for all watchers by the feed.
    queue: asyncio.Queue[tuple[TransitionRead, bytes]] = field(
        default_factory=lambda: asyncio.Queue(maxsize=QUEUE_SIZE)
    )
    overflowed: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    beat: bool = False  # the feed's heartbeat: say something if there is nothing to send
    gone: bool = False  # the client disconnected, or its token was revoked

    def leave(self) -> None:
        """End the stream: it stops at its next step."""
        self.gone = True
        self.wake.set()


def _read_after(
    database: Database,
    after: int,
    limit: int,
    task_id: str | None = None,
    batch_id: str | None = None,
) -> list[TransitionRead]:
    with database.read() as session:
        statement = select(Transition).where(col(Transition.seq) > after)
        if task_id is not None:
            statement = statement.where(Transition.task_id == task_id)
        if batch_id is not None:
            members = select(Task.id).where(col(Task.batch_id) == batch_id)
            statement = statement.where(col(Transition.task_id).in_(members))
        rows = session.exec(statement.order_by(col(Transition.seq)).limit(limit))
        return [TransitionRead.from_row(row) for row in rows]


# While no one watches, the feed needs only (seq, task_id, to_phase) of new transitions: it
# reads them on its own connection, on the event loop, like the `data_version` it polls there
# (a read never waits for the writer under WAL), so a new task's first transition costs no
# thread hop and no row objects.
_MOVED_AFTER = "SELECT seq, task_id, to_phase FROM transitions WHERE seq > ? ORDER BY seq LIMIT ?"


def _latest_seq(database: Database) -> int:
    with database.read() as session:
        row = session.exec(select(Transition).order_by(col(Transition.seq).desc()).limit(1)).first()
        return row.seq or 0 if row else 0


def _owner_of(database: Database, task_id: str) -> tuple[bool, str | None]:
    """Whether the task exists, and whose it is."""
    with database.read() as session:
        row = session.exec(select(Task.pk, Task.owner).where(Task.id == task_id)).first()
        return (False, None) if row is None else (True, row[1])


@dataclass
class BatchScope:
    """A watch on one batch: its tasks, which of them were unfinished as of seq `through`,
    and the seq of its first transition still kept (None where none is)."""

    members: frozenset[str]
    unfinished: set[str]
    through: int
    first_seq: int | None

    def see(self, event: TransitionRead) -> None:
        """Keep `unfinished` up to date with a transition sent after the snapshot."""
        if event.seq <= self.through or event.task_id not in self.members:
            return
        if Phase(event.to_phase) in TERMINAL_PHASES:
            self.unfinished.discard(event.task_id)
        else:  # an admin requeue brings a finished task back
            self.unfinished.add(event.task_id)

    @property
    def finished(self) -> bool:
        return not self.unfinished


def _batch_scope(database: Database, batch_id: str, caller: Caller) -> BatchScope | None:
    """The batch's tasks and where they stand, with the latest seq, in one read snapshot;
    None where there is no such batch of the caller's."""
    with database.read() as session:
        statement = select(Task.id, Task.phase).where(col(Task.batch_id) == batch_id)
        if caller.user is not None:
            statement = statement.where(col(Task.owner) == caller.user)
        tasks = list(session.exec(statement))
        if not tasks:
            return None
        latest = session.exec(select(func.max(Transition.seq))).one()
        members = select(Task.id).where(col(Task.batch_id) == batch_id)
        first = session.exec(
            select(func.min(Transition.seq)).where(col(Transition.task_id).in_(members))
        ).one()
    return BatchScope(
        members=frozenset(task_id for task_id, _ in tasks),
        unfinished={task_id for task_id, phase in tasks if Phase(phase) not in TERMINAL_PHASES},
        through=latest or 0,
        first_seq=first,
    )


def _compacted_through(database: Database) -> int:
    with database.read() as session:
        meta = session.get(Meta, TRANSITIONS_COMPACTED_THROUGH)
        return meta.value if meta else 0


class TransitionFeed:
    """Fans new transitions out to the watchers of this process."""

    def __init__(
        self, database: Database, poll_seconds: float, heartbeat_seconds: float = 15.0
    ) -> None:
        self._db = database
        self._poll = poll_seconds
        self._heartbeat = heartbeat_seconds
        self._subscribers: set[Subscriber] = set()
        self._to_wake: OrderedDict[Subscriber, None] = OrderedDict()  # in the order queued
        self._task_waiters: dict[str, set[asyncio.Event]] = {}
        self._last_seq = 0
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self._poked = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.ready = asyncio.Event()

    def changed(self) -> asyncio.Event:
        """An event set at the next commit by anyone (new output chunks, status changes)."""
        return self._changed

    def subscribe(self) -> Subscriber:
        subscriber = Subscriber()
        self._subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.discard(subscriber)
        self._to_wake.pop(subscriber, None)

    def poke(self) -> None:
        """Look for new transitions now rather than at the next poll; any thread may call it.
        `taskyard serve` has its controller call it after each of its commits."""
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits
                loop.call_soon_threadsafe(self._poked.set)

    @contextlib.contextmanager
    def ends_of(self, task_id: str) -> Iterator[asyncio.Event]:
        """An event set when the task moves to a terminal phase, for as long as the block
        lasts. (Its other moves wake nobody: a waiter would only read it again to no end.)"""
        ended = asyncio.Event()
        self._task_waiters.setdefault(task_id, set()).add(ended)
        try:
            yield ended
        finally:
            waiters = self._task_waiters.get(task_id, set())
            waiters.discard(ended)
            if not waiters:
                self._task_waiters.pop(task_id, None)

    @property
    def watchers(self) -> int:
        return len(self._subscribers)

    async def start(self) -> None:
        self._last_seq = await run_in_threadpool(_latest_seq, self._db)
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._run(), name="taskyard-transition-feed")
        self.ready.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        commits = self._db.commit_watch(self.poke)
        # The few columns the feed reads while no one watches come, on SQLite, from a connection
        # of its own on the event loop (an in-memory database is another one on each
        # connection: that is read through the engine, as Postgres always is).
        path = None if self._db.is_postgres else self._db.reader.url.database
        light = (
            sqlite3.connect(path, check_same_thread=False) if path and path != ":memory:" else None
        )
        loop = asyncio.get_running_loop()
        next_beat = loop.time() + self._heartbeat
        try:
            version = None
            failed_at: float | None = None
            while True:
                current = commits.version()
                retry = failed_at is None or loop.time() - failed_at >= FEED_RETRY_SECONDS
                if current != version and retry:
                    try:
                        await self._publish_new(light)
                    except Exception as exc:
                        # The storage (a Postgres server out of reach, most likely): the feed
                        # reads again in a second, from where it was, and never stops.
                        if failed_at is None:
                            log.warning("watch feed: cannot read new transitions: %s", exc)
                        failed_at = loop.time()
                    else:
                        version, failed_at = current, None
                        self._changed.set()
                        self._changed = asyncio.Event()
                if loop.time() >= next_beat:
                    next_beat = loop.time() + self._heartbeat
                    self._beat()
                if self._to_wake:
                    self._wake_slice()
                    await asyncio.sleep(0)  # the woken watchers send, then the feed looks again
                    continue
                with contextlib.suppress(TimeoutError):
                    wait = min(self._poll, next_beat - loop.time())
                    if failed_at is not None:
                        wait = min(wait, FEED_RETRY_SECONDS)
                    async with asyncio.timeout(wait):
                        await self._poked.wait()
                self._poked.clear()
        finally:
            commits.close()
            if light is not None:
                light.close()

    def _beat(self) -> None:
        for subscriber in self._subscribers:
            subscriber.beat = True
            self._to_wake[subscriber] = None

    def _wake_slice(self) -> None:
        for _ in range(min(WAKE_SLICE, len(self._to_wake))):
            subscriber, _ = self._to_wake.popitem(last=False)
            subscriber.wake.set()

    async def _publish_new(self, light: sqlite3.Connection | None = None) -> None:
        while light is not None and not self._subscribers:
            steps = light.execute(_MOVED_AFTER, (self._last_seq, REPLAY_BATCH)).fetchall()
            for seq, task_id, to_phase in steps:
                self._last_seq = seq
                self._ended(task_id, to_phase)
            if len(steps) < REPLAY_BATCH:
                return
        while True:
            rows = await run_in_threadpool(_read_after, self._db, self._last_seq, REPLAY_BATCH)
            for row in rows:
                self._last_seq = row.seq
                self._ended(row.task_id, row.to_phase)
                item = (row, _frame(row))
                for subscriber in self._subscribers:
                    if subscriber.overflowed:
                        continue
                    try:
                        subscriber.queue.put_nowait(item)
                    except asyncio.QueueFull:
                        subscriber.overflowed = True
                    self._to_wake[subscriber] = None
            if len(rows) < REPLAY_BATCH:
                return

    def _ended(self, task_id: str, to_phase: str) -> None:
        if to_phase in TERMINAL_PHASES:
            for ended in self._task_waiters.get(task_id, ()):
                ended.set()


def _frame(event: TransitionRead) -> bytes:
    data = json.dumps(event.model_dump(), ensure_ascii=False)
    return f"id: {event.seq}\nevent: transition\ndata: {data}\n\n".encode()


def _matches(
    event: TransitionRead, task_id: str | None, phase: Phase | None, batch: BatchScope | None
) -> bool:
    return (
        (task_id is None or event.task_id == task_id)
        and (phase is None or event.to_phase == phase)
        and (batch is None or event.task_id in batch.members)
    )


class _Visibility:
    """Which tasks' transitions a user may see: their own, looked up once per task."""

    def __init__(
        self, database: Database, caller: Caller, own: frozenset[str] = frozenset()
    ) -> None:
        self._db = database
        self.caller = caller
        self._known: dict[str, bool] = dict.fromkeys(own, True)

    async def allows(self, event: TransitionRead) -> bool:
        if self.caller.user is None:
            return True
        if event.task_id not in self._known:
            _, owner = await run_in_threadpool(_owner_of, self._db, event.task_id)
            self._known[event.task_id] = owner == self.caller.user
        return self._known[event.task_id]


async def _stream(
    send: Send,
    feed: TransitionFeed,
    subscriber: Subscriber,
    database: Database,
    after: int,
    task_id: str | None,
    phase: Phase | None,
    visibility: _Visibility,
    batch_id: str | None = None,
    batch: BatchScope | None = None,
) -> None:
    """Write the watch's frames as response body pieces until the client goes away or, for a
    one-task or one-batch watch, the task or every task of the batch ends. The caller has
    started the response."""

    async def write(chunk: bytes) -> None:
        await send({"type": "http.response.body", "body": chunk, "more_body": True})

    last = after
    try:
        await write(b": watching transitions\n\n")
        catch_up = True
        while not subscriber.gone:
            if catch_up:
                # Replay from the database: what happened before we subscribed, or what a full
                # queue could not hold.
                subscriber.overflowed = False
                ended = False
                while not subscriber.gone:
                    rows = await run_in_threadpool(
                        _read_after, database, last, REPLAY_BATCH, task_id, batch_id
                    )
                    replayed: list[bytes] = []
                    for event in rows:
                        last = event.seq
                        if batch is not None:
                            batch.see(event)
                        if _matches(event, task_id, phase, batch) and await visibility.allows(
                            event
                        ):
                            replayed.append(_frame(event))
                        ended = Phase(event.to_phase) in TERMINAL_PHASES
                    if replayed:
                        await write(b"".join(replayed))
                    if len(rows) < REPLAY_BATCH:
                        break
                # A one-task watch ends where the task's history does, if that is an ending;
                # an earlier ending followed by an admin requeue does not count.
                if (task_id is not None and ended) or (batch is not None and batch.finished):
                    return
                catch_up = False
            # What queued up goes out in one write: with many watchers, a burst of transitions
            # costs each stream one send, not one per transition.
            frames: list[bytes] = []
            ending = False
            while not subscriber.queue.empty() and not ending:
                event, frame = subscriber.queue.get_nowait()
                if event.seq <= last:
                    continue
                last = event.seq
                if batch is not None:
                    batch.see(event)
                if _matches(event, task_id, phase, batch) and await visibility.allows(event):
                    frames.append(frame)
                ending = (
                    task_id == event.task_id and Phase(event.to_phase) in TERMINAL_PHASES
                ) or (batch is not None and batch.finished)
            if frames:
                await write(b"".join(frames))
            elif subscriber.beat:
                await write(b": keepalive\n\n")
            subscriber.beat = False
            if ending:
                return
            if subscriber.overflowed:
                catch_up = True
                continue
            subscriber.wake.clear()
            await subscriber.wake.wait()
    finally:
        feed.unsubscribe(subscriber)


async def _until_disconnect(receive: Receive, subscriber: Subscriber) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    subscriber.leave()


class _EventStream(Response):
    """The watch's response: frames go from `_stream` to the server's `send` with nothing in
    between, and a client that disconnects, or whose token is revoked, is noticed at once (its
    stream is woken to end)."""

    media_type = "text/event-stream"

    def __init__(
        self,
        feed: TransitionFeed,
        subscriber: Subscriber,
        streams: StreamRegistry,
        database: Database,
        after: int,
        task_id: str | None,
        phase: Phase | None,
        batch_id: str | None,
        batch: BatchScope | None,
        visibility: _Visibility,
    ) -> None:
        self.status_code = 200
        self.background = None
        self.init_headers({"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self._feed = feed
        self._subscriber = subscriber
        self._streams = streams
        self._caller = visibility.caller
        self._args = (database, after, task_id, phase, visibility, batch_id, batch)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": self.status_code,
                    "headers": self.raw_headers,
                }
            )
            listener = asyncio.create_task(_until_disconnect(receive, self._subscriber))
        except BaseException:
            self._feed.unsubscribe(self._subscriber)
            raise
        try:
            with self._streams.hold(self._caller, on_end=self._subscriber.leave):
                await _stream(send, self._feed, self._subscriber, *self._args)
        finally:
            listener.cancel()
        await send({"type": "http.response.body", "body": b"", "more_body": False})


@router.get(
    "/watch",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}},
        **error_responses(401, 404, 410, 422, 503),
    },
)
async def watch(
    request: Request,
    database: DatabaseDep,
    caller: CallerDep,
    task_id: str | None = None,
    phase: PhaseQuery = None,
    batch: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[int | None, Query(ge=0, le=MAX_SEQ)] = None,
    last_event_id: Annotated[str | None, Header(json_schema_extra=SEQ_HEADER_SCHEMA)] = None,
) -> Response:
    """Stream phase transitions as Server-Sent Events; resume after Last-Event-ID or `since`."""
    if last_event_id is not None:
        since = parse_seq(last_event_id, "a transition seq")
    if task_id is not None:
        found, owner = await run_in_threadpool(_owner_of, database, task_id)
        if not found or (caller.user is not None and owner != caller.user):
            raise HTTPException(404, f"task {task_id} not found")
    feed: TransitionFeed = request.app.state.feed
    await feed.ready.wait()
    subscriber = feed.subscribe()
    try:
        # Read after subscribing: whatever moves after this snapshot reaches the stream.
        scope = None
        if batch is not None:
            scope = await run_in_threadpool(_batch_scope, database, batch, caller)
            if scope is None:
                raise HTTPException(404, f"batch {batch} not found")
        compacted = await run_in_threadpool(_compacted_through, database)
        if since is None and scope is not None:
            # A watch on a batch starts from the batch's first transition still kept.
            since = scope.through if scope.first_seq is None else scope.first_seq - 1
        if since is None:
            # A watch on one task starts from its beginning (or what is left of it); a watch on
            # all, from now.
            since = (
                compacted if task_id is not None else await run_in_threadpool(_latest_seq, database)
            )
        if since < compacted:
            raise HTTPException(
                410,
                f"transitions up to seq {compacted} were compacted away; "
                "list the tasks again and watch from the latest seq",
            )
    except BaseException:
        feed.unsubscribe(subscriber)
        raise
    return _EventStream(
        feed,
        subscriber,
        request.app.state.streams,
        database,
        since,
        task_id,
        phase,
        batch,
        scope,
        _Visibility(database, caller, scope.members if scope is not None else frozenset()),
    )
