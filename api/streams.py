"""Open streams by the token that opened them, ended when that token is revoked.

A stream outlives the check of its token at its start: `GET /watch`, `GET /tasks/{id}/logs
?follow=true` and `WS /tasks/{id}/attach` hold their caller here while they are open. A token
can be revoked by this process's admin route (which says so at once), by another API process
over the same database, or by anyone who writes the database; so one task of the API process
reads, once a second and only while some stream is open, which of the holders' tokens are
revoked, and ends their streams. A stream opened without a token in open mode ends when open
mode does (a user token is created). The admin token cannot be revoked while the
process runs; its streams are not held.
"""

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from sqlmodel import col, select
from starlette.concurrency import run_in_threadpool

from api.auth import ActiveTokens, Caller, open_mode
from models.database import Database
from models.settings import Settings
from models.tables import ApiToken

log = logging.getLogger("taskyard.api")

CHECK_SECONDS = 1.0


@dataclass(eq=False)
class _Hold:
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    on_end: Callable[[], None] | None = None

    def end(self) -> None:
        self.ended.set()
        if self.on_end is not None:
            self.on_end()


class StreamRegistry:
    """The open streams of this process, by token id (None: no token, in open mode)."""

    def __init__(
        self,
        database: Database,
        settings: Settings,
        tokens: ActiveTokens,
        check_seconds: float = CHECK_SECONDS,
    ) -> None:
        self._db = database
        self._settings = settings
        self._tokens = tokens
        self._check_seconds = check_seconds
        self._holds: dict[str | None, set[_Hold]] = {}
        self._any = asyncio.Event()  # set while some stream is held
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    @contextlib.contextmanager
    def hold(
        self, caller: Caller, on_end: Callable[[], None] | None = None
    ) -> Iterator[asyncio.Event]:
        """For the block's length, an event set (and `on_end` called) when the caller's token
        is revoked. Call it on the event loop."""
        hold = _Hold(on_end=on_end)
        if caller.is_admin:
            yield hold.ended
            return
        holds = self._holds.setdefault(caller.user, set())
        holds.add(hold)
        self._any.set()
        try:
            yield hold.ended
        finally:
            holds.discard(hold)
            if not holds and self._holds.get(caller.user) is holds:
                del self._holds[caller.user]
            if not self._holds:
                self._any.clear()

    @property
    def held(self) -> int:
        return sum(len(holds) for holds in self._holds.values())

    def revoked(self, token_id: str) -> None:
        """This process revoked the token: end its streams now. Any thread may call it."""
        loop = self._loop
        keys: set[str | None] = {token_id}
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nothing is open
                loop.call_soon_threadsafe(self._end, keys)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._run(), name="taskyard-stream-revocation")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _end(self, keys: set[str | None]) -> None:
        for key in keys:
            holds = self._holds.pop(key, set())
            if holds:
                log.info(
                    "ending %d open stream(s) of %s",
                    len(holds),
                    f"revoked token {key}" if key else "open mode, which has ended",
                )
            for hold in holds:
                hold.end()
        if not self._holds:
            self._any.clear()

    async def _run(self) -> None:
        while True:
            await self._any.wait()
            await asyncio.sleep(self._check_seconds)
            keys = set(self._holds)
            if not keys:
                continue
            try:
                gone = await run_in_threadpool(self._gone, keys)
            except Exception:
                # Whatever failed (the storage, most likely), the check must go on: a stopped
                # check would leave every revoked token's streams open.
                log.exception("could not check the open streams' tokens; trying again")
                continue
            self._end(gone)

    def _gone(self, keys: set[str | None]) -> set[str | None]:
        """Which of these holders may no longer stream."""
        users = [key for key in keys if key is not None]
        gone: set[str | None] = set()
        with self._db.read() as session:
            if users:
                gone.update(
                    session.exec(
                        select(ApiToken.id).where(
                            col(ApiToken.id).in_(users), col(ApiToken.revoked_at).is_not(None)
                        )
                    ).all()
                )
            if None in keys and not open_mode(self._settings, session, self._tokens):
                gone.add(None)
        return gone
