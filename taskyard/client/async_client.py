"""`AsyncClient`: `Client`'s twin for asyncio (httpx.AsyncClient), method for method; `list`,
`watch`, `logs` and `log_events` are async iterators.
"""

import asyncio
import builtins
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any

import httpx

from taskyard.client import protocol
from taskyard.client.errors import WaitTimeout
from taskyard.client.protocol import LogCursor, RetryHook, WatchCursor
from taskyard.client.records import (
    Batch,
    BatchCreated,
    LogEnd,
    OutputChunk,
    Page,
    Task,
    Transition,
)


class AsyncClient:
    """As `Client`, for `await`: `async with AsyncClient() as client: await client.run(...)`.
    A watch's 410 (history compacted) raises `HistoryGone`: there is no `on_gone` here."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        wait_step: float = protocol.MAX_WAIT_STEP,
        http_timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.base_url = protocol.server_url(url)
        self.wait_step = protocol.check_wait_step(wait_step)
        token = protocol.user_token(token)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=headers, timeout=http_timeout, transport=transport
        )
        self._sleep = sleep

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    # --- tasks ----------------------------------------------------------------------------

    async def run(
        self,
        code: str,
        *,
        resources: Mapping[str, str | int] | None = None,
        timeout: int | None = None,
        stdin: str | None = None,
        max_wait: float | None = None,
        **fields: Any,
    ) -> Task:
        """`Client.run`: submit, then return the task once it has ended."""
        task = await self.submit(code, resources=resources, timeout=timeout, stdin=stdin, **fields)
        return await self.wait(task.id, max_wait=max_wait)

    async def submit(
        self,
        code: str,
        *,
        resources: Mapping[str, str | int] | None = None,
        timeout: int | None = None,
        stdin: str | None = None,
        **fields: Any,
    ) -> Task:
        """`Client.submit`: store a new task and return it (phase Pending)."""
        body = protocol.task_body(code, resources, timeout, stdin, fields)
        return Task(await self._call("POST", "/tasks", json=body))

    async def get(self, task_id: str, *, wait: float = 0) -> Task:
        params = {"wait": wait} if wait else None
        return Task(
            await self._call(
                "GET", f"/tasks/{task_id}", params=params, timeout=protocol.wait_timeout(wait)
            )
        )

    async def wait(self, task_id: str, *, max_wait: float | None = None) -> Task:
        """`Client.wait`: the task once it has ended, or `WaitTimeout` after `max_wait`."""
        deadline = None if max_wait is None else time.monotonic() + max_wait
        while True:
            left = self.wait_step if deadline is None else deadline - time.monotonic()
            task = await self.get(task_id, wait=max(min(self.wait_step, left), 0))
            if task.done:
                return task
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(task, max_wait or 0)

    async def list(
        self,
        phase: str | None = None,
        *,
        limit: int | None = None,
        page_size: int = 50,
        batch: str | None = None,
    ) -> AsyncIterator[Task]:
        """`Client.list`: tasks, newest first, page after page."""
        cursor: str | None = None
        count = 0
        while True:
            page = await self.list_page(phase=phase, limit=page_size, cursor=cursor, batch=batch)
            for task in page.items:
                if limit is not None and count >= limit:
                    return
                count += 1
                yield task
            cursor = page.next_cursor
            if cursor is None:
                return

    async def list_page(
        self,
        *,
        phase: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
        batch: str | None = None,
        id_prefix: str | None = None,
    ) -> Page:
        answer = await self._call(
            "GET",
            "/tasks",
            params=protocol.query(
                phase=phase, limit=limit, cursor=cursor, batch=batch, id_prefix=id_prefix
            ),
        )
        return Page([Task(item) for item in answer["items"]], answer.get("next_cursor"))

    async def cancel(self, task_id: str) -> Task:
        return Task(await self._call("DELETE", f"/tasks/{task_id}"))

    # --- batches --------------------------------------------------------------------------

    async def submit_batch(self, tasks: Iterable[Mapping[str, Any]]) -> BatchCreated:
        """`Client.submit_batch`: up to 1000 tasks in one request, all or none."""
        return BatchCreated(await self._call("POST", "/batches", json=protocol.batch_body(tasks)))

    async def batch(self, batch_id: str) -> Batch:
        """`Client.batch`: where the batch stands."""
        return Batch(await self._call("GET", f"/batches/{batch_id}"))

    async def cancel_batch(self, batch_id: str) -> Batch:
        """`Client.cancel_batch`: ask for each unfinished task of the batch to be stopped."""
        return Batch(await self._call("DELETE", f"/batches/{batch_id}"))

    async def events(self, task_id: str) -> builtins.list[Transition]:
        answer = await self._call("GET", f"/tasks/{task_id}/events")
        return [Transition(item) for item in answer["items"]]

    async def watch(
        self,
        task_id: str | None = None,
        *,
        phase: str | None = None,
        since: int | None = None,
        retries: int = 5,
        read_timeout: float = 60.0,
        on_retry: RetryHook | None = None,
        batch: str | None = None,
    ) -> AsyncIterator[Transition]:
        """`Client.watch`: transitions as they happen, each once, across dropped connections."""
        cursor = WatchCursor(
            self.base_url,
            task_id=task_id,
            phase=phase,
            since=since,
            retries=retries,
            batch=batch,
        )
        while True:
            params, headers = cursor.request()
            why = "the server closed the stream"
            try:
                async with self._http.stream(
                    "GET",
                    "/watch",
                    params=params,
                    headers=headers,
                    timeout=protocol.stream_timeout(read_timeout),
                ) as response:
                    if response.status_code >= 400:
                        await response.aread()
                        refused = cursor.refused(protocol.refusal(response), None)
                        why = refused or why
                    else:
                        cursor.opened()
                        async for line in response.aiter_lines():
                            transition = cursor.line(line)
                            if transition is not None:
                                yield transition
                        if cursor.single:
                            return
            except httpx.TransportError as exc:
                why = cursor.dropped(exc)
            delay = cursor.failed(why)
            if on_retry is not None:
                on_retry(why, cursor.failures, delay)
            await self._sleep(delay)

    async def logs(
        self,
        task_id: str,
        *,
        follow: bool = False,
        stream: str | None = None,
        retries: int = 5,
        read_timeout: float = 60.0,
    ) -> AsyncIterator[OutputChunk]:
        """`Client.logs`: the task's output, chunk by chunk."""
        async for item in self.log_events(
            task_id, follow=follow, stream=stream, retries=retries, read_timeout=read_timeout
        ):
            if isinstance(item, OutputChunk):
                yield item

    async def log_events(
        self,
        task_id: str,
        *,
        follow: bool = False,
        stream: str | None = None,
        retries: int = 5,
        read_timeout: float = 60.0,
    ) -> AsyncIterator[OutputChunk | LogEnd]:
        """`Client.log_events`: as `logs`, and last a `LogEnd` once the task has ended."""
        cursor = LogCursor(self.base_url, task_id, follow=follow, stream=stream, retries=retries)
        while True:
            try:
                async with self._http.stream(
                    "GET",
                    cursor.path,
                    params=cursor.params,
                    headers=cursor.headers(),
                    timeout=protocol.stream_timeout(read_timeout),
                ) as response:
                    if response.status_code >= 400:
                        await response.aread()
                        raise protocol.refusal(response)
                    async for line in response.aiter_lines():
                        item = cursor.line(line)
                        if item is not None:
                            yield item
                        if cursor.ended:
                            return
                    if not follow:
                        return
            except httpx.TransportError as exc:
                cursor.dropped(exc)
            await self._sleep(cursor.failed())

    async def runtimes(self) -> dict[str, Any]:
        """GET /runtimes: `items`, the runtimes the server can run; `not_installed`, the others."""
        answer: dict[str, Any] = await self._call("GET", "/runtimes")
        return answer

    # --- admin (the admin token) ------------------------------------------------------------

    async def capacity(self) -> dict[str, Any]:
        answer: dict[str, Any] = await self._call("GET", "/admin/capacity")
        return answer

    async def stuck(self) -> dict[str, Any]:
        answer: dict[str, Any] = await self._call("GET", "/admin/tasks/stuck")
        return answer

    async def reset(self, task_id: str, to: str = "Pending", *, attempt: int | None = None) -> Task:
        body: dict[str, Any] = {"to": to} | ({"attempt": attempt} if attempt else {})
        return Task(await self._call("POST", f"/admin/tasks/{task_id}/reset", json=body))

    async def admin_call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        answer: dict[str, Any] = await self._call(method, path, json=body)
        return answer

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: Any = None,
        json: Any = None,
        timeout: float | None = None,
    ) -> Any:
        try:
            response = await self._http.request(
                method,
                path,
                params=params,
                json=json,
                timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
            )
        except httpx.TransportError as exc:
            raise protocol.unreachable(exc, self.base_url) from None
        return protocol.answer(response)
