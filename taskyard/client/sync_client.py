"""`Client`: taskyard's REST API from Python, one blocking call at a time (httpx). The CLI's
verbs are built on it; `AsyncClient` is its twin for asyncio.
"""

import builtins
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import httpx

from taskyard.client import protocol
from taskyard.client.errors import WaitTimeout
from taskyard.client.protocol import GoneHook, LogCursor, RetryHook, WatchCursor
from taskyard.client.records import (
    Batch,
    BatchCreated,
    LogEnd,
    OutputChunk,
    Page,
    Task,
    Transition,
)


class Client:
    """A taskyard server's tasks. `url` defaults to `$TASKYARD_SERVER`, else
    http://127.0.0.1:8000; `token` to `$TASKYARD_TOKEN` ("" sends none). `wait_step` is how
    long one request waits on the server (at most its cap, 60 s); `wait` and `run` repeat
    such requests until the task ends. Close it, or use it in a `with` block."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        wait_step: float = protocol.MAX_WAIT_STEP,
        http_timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = protocol.server_url(url)
        self.wait_step = protocol.check_wait_step(wait_step)
        token = protocol.user_token(token)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=http_timeout, transport=transport
        )
        self._sleep = sleep

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # --- tasks ----------------------------------------------------------------------------

    def run(
        self,
        code: str,
        *,
        resources: Mapping[str, str | int] | None = None,
        timeout: int | None = None,
        stdin: str | None = None,
        max_wait: float | None = None,
        **fields: Any,
    ) -> Task:
        """Submit a task and return it once it has ended (however long that takes, unless
        `max_wait` seconds pass first: `WaitTimeout`). Check `task.status.phase`: a task that
        failed is returned, not raised."""
        task = self.submit(code, resources=resources, timeout=timeout, stdin=stdin, **fields)
        return self.wait(task.id, max_wait=max_wait)

    def submit(
        self,
        code: str,
        *,
        resources: Mapping[str, str | int] | None = None,
        timeout: int | None = None,
        stdin: str | None = None,
        **fields: Any,
    ) -> Task:
        """Store a new task and return it (phase Pending). `resources` fill in the defaults
        (cpu "1", gpu "0", ram "256MB", storage "100MB"); `timeout` is the task's
        `timeout_seconds`; other fields of the contract go as given (`interactive=True`).
        `client.submit(**task.spec)` submits a task again."""
        body = protocol.task_body(code, resources, timeout, stdin, fields)
        return Task(self._call("POST", "/tasks", json=body))

    def get(self, task_id: str, *, wait: float = 0) -> Task:
        """The task; with `wait`, once it ends or `wait` seconds (at most 60) have passed."""
        params = {"wait": wait} if wait else None
        return Task(
            self._call(
                "GET", f"/tasks/{task_id}", params=params, timeout=protocol.wait_timeout(wait)
            )
        )

    def wait(self, task_id: str, *, max_wait: float | None = None) -> Task:
        """The task once it has ended, waiting `wait_step` seconds per request for as long as
        it takes, or `max_wait` seconds at most (then `WaitTimeout`)."""
        deadline = None if max_wait is None else time.monotonic() + max_wait
        while True:
            left = self.wait_step if deadline is None else deadline - time.monotonic()
            task = self.get(task_id, wait=max(min(self.wait_step, left), 0))
            if task.done:
                return task
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(task, max_wait or 0)

    def list(
        self,
        phase: str | None = None,
        *,
        limit: int | None = None,
        page_size: int = 50,
        batch: str | None = None,
    ) -> Iterator[Task]:
        """Tasks, newest first (only those in `phase`, or of `batch`, if given), page after
        page: every one, or the first `limit`."""
        cursor: str | None = None
        count = 0
        while True:
            page = self.list_page(phase=phase, limit=page_size, cursor=cursor, batch=batch)
            for task in page.items:
                if limit is not None and count >= limit:
                    return
                count += 1
                yield task
            cursor = page.next_cursor
            if cursor is None:
                return

    def list_page(
        self,
        *,
        phase: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
        batch: str | None = None,
        id_prefix: str | None = None,
    ) -> Page:
        """One page of GET /tasks; `cursor` is the `next_cursor` of the page before."""
        answer = self._call(
            "GET",
            "/tasks",
            params=protocol.query(
                phase=phase, limit=limit, cursor=cursor, batch=batch, id_prefix=id_prefix
            ),
        )
        return Page([Task(item) for item in answer["items"]], answer.get("next_cursor"))

    def cancel(self, task_id: str) -> Task:
        """Ask for the task to be stopped (`Conflict` once it has ended); the controller acts
        on it, so the answer may still be Running."""
        return Task(self._call("DELETE", f"/tasks/{task_id}"))

    # --- batches --------------------------------------------------------------------------

    def submit_batch(self, tasks: Iterable[Mapping[str, Any]]) -> BatchCreated:
        """Store up to 1000 tasks in one request, all or none (an `InvalidRequest` names the
        item: `tasks.17.resources.cpu: ...`); each is a dict of a task's fields, `code`
        required and `resources` filled in as `submit` does. Returns the batch's id and its
        tasks' ids in the order given."""
        return BatchCreated(self._call("POST", "/batches", json=protocol.batch_body(tasks)))

    def batch(self, batch_id: str) -> Batch:
        """Where the batch stands: its tasks counted by phase, how many are done."""
        return Batch(self._call("GET", f"/batches/{batch_id}"))

    def cancel_batch(self, batch_id: str) -> Batch:
        """Ask for each unfinished task of the batch to be stopped; the batch as it stands."""
        return Batch(self._call("DELETE", f"/batches/{batch_id}"))

    def events(self, task_id: str) -> builtins.list[Transition]:
        """The task's phase transitions, oldest first."""
        answer = self._call("GET", f"/tasks/{task_id}/events")
        return [Transition(item) for item in answer["items"]]

    def watch(
        self,
        task_id: str | None = None,
        *,
        phase: str | None = None,
        since: int | None = None,
        retries: int = 5,
        read_timeout: float = 60.0,
        on_retry: RetryHook | None = None,
        on_gone: GoneHook | None = None,
        batch: str | None = None,
    ) -> Iterator[Transition]:
        """Transitions as they happen (of one task, of one batch, or into one phase), each
        once and in order across dropped connections; first those after `since`, a seq. A
        one-task watch ends after the task's last transition, a batch watch (from the batch's
        first transition, without `since`) once every task of it has ended; otherwise it goes
        on until you stop iterating. A 410 (history compacted) raises `HistoryGone`, or asks
        `on_gone` where to resume."""
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
                with self._http.stream(
                    "GET",
                    "/watch",
                    params=params,
                    headers=headers,
                    timeout=protocol.stream_timeout(read_timeout),
                ) as response:
                    if response.status_code >= 400:
                        response.read()
                        refused = cursor.refused(protocol.refusal(response), on_gone)
                        if refused is None:
                            continue
                        why = refused
                    else:
                        cursor.opened()
                        for line in response.iter_lines():
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
            self._sleep(delay)

    def logs(
        self,
        task_id: str,
        *,
        follow: bool = False,
        stream: str | None = None,
        retries: int = 5,
        read_timeout: float = 60.0,
    ) -> Iterator[OutputChunk]:
        """The task's output, chunk by chunk (`chunk.stream`, `chunk.text`): what there is so
        far, or with `follow` everything until the task ends."""
        for item in self.log_events(
            task_id, follow=follow, stream=stream, retries=retries, read_timeout=read_timeout
        ):
            if isinstance(item, OutputChunk):
                yield item

    def log_events(
        self,
        task_id: str,
        *,
        follow: bool = False,
        stream: str | None = None,
        retries: int = 5,
        read_timeout: float = 60.0,
    ) -> Iterator[OutputChunk | LogEnd]:
        """As `logs`, and last a `LogEnd` (how the task ended) once it has ended."""
        cursor = LogCursor(self.base_url, task_id, follow=follow, stream=stream, retries=retries)
        while True:
            try:
                with self._http.stream(
                    "GET",
                    cursor.path,
                    params=cursor.params,
                    headers=cursor.headers(),
                    timeout=protocol.stream_timeout(read_timeout),
                ) as response:
                    if response.status_code >= 400:
                        response.read()
                        raise protocol.refusal(response)
                    for line in response.iter_lines():
                        item = cursor.line(line)
                        if item is not None:
                            yield item
                        if cursor.ended:
                            return
                    if not follow:
                        return
            except httpx.TransportError as exc:
                cursor.dropped(exc)
            self._sleep(cursor.failed())

    def runtimes(self) -> dict[str, Any]:
        """GET /runtimes: `items`, the runtimes the server can run; `not_installed`, the others."""
        answer: dict[str, Any] = self._call("GET", "/runtimes")
        return answer

    # --- admin (the admin token) ------------------------------------------------------------

    def capacity(self) -> dict[str, Any]:
        answer: dict[str, Any] = self._call("GET", "/admin/capacity")
        return answer

    def stuck(self) -> dict[str, Any]:
        answer: dict[str, Any] = self._call("GET", "/admin/tasks/stuck")
        return answer

    def reset(self, task_id: str, to: str = "Pending", *, attempt: int | None = None) -> Task:
        body: dict[str, Any] = {"to": to} | ({"attempt": attempt} if attempt else {})
        return Task(self._call("POST", f"/admin/tasks/{task_id}/reset", json=body))

    def admin_call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        """An admin route that answers JSON (the token routes)."""
        answer: dict[str, Any] = self._call(method, path, json=body)
        return answer

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: Any = None,
        json: Any = None,
        timeout: float | None = None,
    ) -> Any:
        try:
            response = self._http.request(
                method,
                path,
                params=params,
                json=json,
                timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
            )
        except httpx.TransportError as exc:
            raise protocol.unreachable(exc, self.base_url) from None
        return protocol.answer(response)
