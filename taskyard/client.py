"""A small typed client for the taskyard REST API (`shared/spec/API.md`), used by the CLI verbs
in `taskyard.commands`. It speaks only HTTP: it never imports `api/` or `controller/`.

Every failure the CLI should report as one line is a `ClientError`:

    ClientError                 base; carries the CLI exit code
    ├── ApiError                the server answered 4xx/5xx: `status` and its `detail`
    │   └── HistoryGone         410 from /watch: the history to resume from was compacted
    └── CannotConnect           the server could not be reached, or the connection broke

`/watch` is read as Server-Sent Events by `SseParser`; `TaskyardClient.watch` reconnects with
`Last-Event-ID` when a connection drops and never yields a sequence number twice.
"""

import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypedDict, cast

import httpx

DEFAULT_SERVER = "http://127.0.0.1:8000"
SERVER_ENV = "TASKYARD_SERVER"
TERMINAL_PHASES = frozenset({"Succeeded", "Failed", "TimedOut", "Cancelled"})
EXIT_API_ERROR = 1
EXIT_CANNOT_CONNECT = 3
# Request locations FastAPI puts in front of a field name; a user thinks of `resources.cpu`.
_LOC_PREFIXES = {"body", "query", "path", "header"}


class Resources(TypedDict):
    cpu: int
    gpu: int
    ram: str
    storage: str


class TaskSpec(TypedDict):
    task_type: str
    code: str
    resources: Resources
    timeout_seconds: int
    stdin: str | None


class Assigned(TypedDict):
    cpus: list[int]
    gpus: list[int]


class TaskStatus(TypedDict):
    phase: str
    reason: str
    message: str
    result: str | None
    exit_code: int | None
    stdout: str | None
    stderr: str | None
    stdout_truncated: bool
    stderr_truncated: bool
    assigned: Assigned
    attempt: int
    scheduled_at: str | None
    started_at: str | None
    finished_at: str | None


class Task(TypedDict):
    id: str
    created_at: str
    resource_version: int
    spec: TaskSpec
    status: TaskStatus


class TaskPage(TypedDict):
    items: list[Task]
    next_cursor: str | None


class Transition(TypedDict):
    seq: int
    task_id: str
    from_phase: str | None
    to_phase: str
    reason: str
    message: str
    at: str


class ClientError(Exception):
    exit_code = EXIT_API_ERROR


class ApiError(ClientError):
    def __init__(self, status: int, detail: Any) -> None:
        self.status = status
        self.detail = detail
        super().__init__(render_detail(detail) or f"the server answered HTTP {status}")


class HistoryGone(ApiError):
    """The watch history to resume from is gone; the client must restart from current state."""


class CannotConnect(ClientError):
    exit_code = EXIT_CANNOT_CONNECT


def render_detail(detail: Any) -> str:
    """FastAPI's `detail`: a sentence, or a list of {loc, msg, type} rendered `resources.cpu: …`."""
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):
        return "; ".join(_render_field_error(entry) for entry in detail)
    return "" if detail is None else json.dumps(detail)


def _render_field_error(entry: Any) -> str:
    if not isinstance(entry, dict):
        return str(entry)
    loc = [str(part) for part in entry.get("loc", [])]
    if loc and loc[0] in _LOC_PREFIXES:
        loc = loc[1:]
    msg = str(entry.get("msg", "invalid value")).removeprefix("Value error, ")
    return f"{'.'.join(loc)}: {msg}" if loc else msg


def server_url(flag: str | None) -> str:
    return (flag or os.environ.get(SERVER_ENV) or DEFAULT_SERVER).rstrip("/")


@dataclass
class SseEvent:
    id: str | None
    event: str
    data: str


@dataclass
class SseParser:
    """Server-Sent Events, line by line, as the WHATWG HTML standard's parsing rules say."""

    last_id: str | None = None
    _event: str = ""
    _data: list[str] = field(default_factory=list)

    def feed(self, line: str) -> SseEvent | None:
        """Take one line (without its end); return an event when a blank line completes one."""
        if line == "":
            if not self._data:
                self._event = ""
                return None
            event = SseEvent(self.last_id, self._event or "message", "\n".join(self._data))
            self._event, self._data = "", []
            return event
        if line.startswith(":"):  # a comment: the server's heartbeat
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self.last_id = value
        return None


def parse_sse(lines: Iterable[str]) -> Iterator[SseEvent]:
    parser = SseParser()
    for line in lines:
        event = parser.feed(line)
        if event is not None:
            yield event


def _transition(data: str) -> Transition:
    try:
        return cast(Transition, json.loads(data))
    except ValueError:
        raise ClientError(f"the server sent a watch event that is not JSON: {data[:200]!r}"
                          ) from None


RetryHook = Callable[[str, int, float], None]
# Told that the history is gone; answers the seq to resume after (None: the server's "now").
GoneHook = Callable[[HistoryGone], int | None]


class TaskyardClient:
    """The REST calls the CLI needs, each returning the server's JSON as a typed dict."""

    def __init__(
        self, base_url: str, *, token: str | None = None, timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout,
                                  transport=transport)
        self._sleep = sleep

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "TaskyardClient":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def submit(self, body: dict[str, Any]) -> Task:
        return cast(Task, self._call("POST", "/tasks", json=body))

    def get(self, task_id: str, *, wait: float = 0) -> Task:
        params = {"wait": wait} if wait else None
        # A waiting request answers after up to `wait` seconds; do not time out before that.
        return cast(Task, self._call("GET", f"/tasks/{task_id}", params=params,
                                     timeout=wait + 30))

    def list_tasks(self, *, phase: str | None = None, limit: int | None = None,
             cursor: str | None = None) -> TaskPage:
        params = {k: v for k, v in (("phase", phase), ("limit", limit), ("cursor", cursor))
                  if v is not None}
        return cast(TaskPage, self._call("GET", "/tasks", params=params))

    def cancel(self, task_id: str) -> Task:
        return cast(Task, self._call("DELETE", f"/tasks/{task_id}"))

    def events(self, task_id: str) -> list[Transition]:
        answer = self._call("GET", f"/tasks/{task_id}/events")
        return cast(list[Transition], answer["items"])

    def capacity(self) -> dict[str, Any]:
        return cast(dict[str, Any], self._call("GET", "/admin/capacity"))

    def stuck(self) -> dict[str, Any]:
        return cast(dict[str, Any], self._call("GET", "/admin/tasks/stuck"))

    def admin_call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        """An admin route that answers JSON (the token verbs)."""
        return cast(dict[str, Any], self._call(method, path, json=body))

    def reset(self, task_id: str, to: str, *, attempt: int | None = None) -> Task:
        body: dict[str, Any] = {"to": to} | ({"attempt": attempt} if attempt else {})
        return cast(Task, self._call("POST", f"/admin/tasks/{task_id}/reset", json=body))

    def watch(
        self, *, task_id: str | None = None, phase: str | None = None, since: int | None = None,
        retries: int = 5, read_timeout: float = 60.0,
        on_retry: RetryHook | None = None, on_gone: GoneHook | None = None,
    ) -> Iterator[Transition]:
        """Transitions from GET /watch, in order, each once, across dropped connections.

        A server that cannot be reached at all raises `CannotConnect` at once. A connection that
        drops later is resumed with `Last-Event-ID`; after `retries` attempts in a row that
        bring nothing (not even a heartbeat) it raises `CannotConnect`. A 410 (history
        compacted) goes to `on_gone`, which says where to restart (the relist); without
        `on_gone`, or on a second 410 in a row, it raises `HistoryGone`. A single-task watch
        ends when the server closes it.
        """
        filters = {k: v for k, v in (("task_id", task_id), ("phase", phase)) if v}
        resume_after = since
        last_seen = since  # never yield a seq at or below this one
        first = True
        failures = 0
        relisted = False  # a 410 right after a relist would loop forever: raise instead
        connected = False  # a server that was never there is an error now, not after retries
        while True:
            params: dict[str, Any] = dict(filters)
            headers = {"Accept": "text/event-stream"}
            if resume_after is not None and first:
                params["since"] = resume_after
            elif resume_after is not None:
                headers["Last-Event-ID"] = str(resume_after)
            first = False
            why = "the server closed the stream"
            try:
                with self._http.stream(
                    "GET", "/watch", params=params, headers=headers,
                    timeout=httpx.Timeout(10.0, read=read_timeout),
                ) as response:
                    if response.status_code >= 400:
                        response.read()
                        error = self._error(response)
                        if isinstance(error, HistoryGone) and on_gone and not relisted:
                            resume_after = on_gone(error)
                            relisted = True
                            continue
                        if response.status_code < 500 or not connected:
                            raise error
                        raise httpx.TransportError(str(error))  # 5xx: retried below
                    connected = True
                    parser = SseParser()
                    for line in response.iter_lines():
                        failures = 0  # any line, heartbeats included, shows the link is alive
                        relisted = False
                        sse = parser.feed(line)
                        if sse is None or sse.event != "transition":
                            continue
                        transition = _transition(sse.data)
                        seq = int(transition.get("seq", sse.id or 0))
                        resume_after = seq if resume_after is None else max(seq, resume_after)
                        if last_seen is not None and seq <= last_seen:
                            continue
                        last_seen = seq
                        yield transition
                if task_id:
                    return  # the server ends a single-task watch after its terminal transition
            except httpx.TransportError as exc:
                if not connected:
                    raise self._unreachable(exc) from None
                why = str(exc) or type(exc).__name__
            failures += 1
            if failures > retries:
                raise CannotConnect(f"lost the watch on taskyard at {self.base_url}: {why}; "
                                    f"gave up after {retries} reconnects")
            delay = min(0.5 * 2 ** (failures - 1), 5.0)
            if on_retry is not None:
                on_retry(why, failures, delay)
            self._sleep(delay)

    def logs(
        self, task_id: str, *, follow: bool = False, stream: str | None = None,
        retries: int = 5, read_timeout: float = 60.0,
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """("output" | "end", payload) from GET /tasks/{id}/logs, resumed after a dropped
        connection with Last-Event-ID, each chunk once."""
        params: dict[str, Any] = {"follow": "true" if follow else "false"}
        if stream:
            params["stream"] = stream
        last: int | None = None
        failures = 0
        while True:
            headers = {"Accept": "text/event-stream"}
            if last is not None:
                headers["Last-Event-ID"] = str(last)
            try:
                with self._http.stream(
                    "GET", f"/tasks/{task_id}/logs", params=params, headers=headers,
                    timeout=httpx.Timeout(10.0, read=read_timeout),
                ) as response:
                    if response.status_code >= 400:
                        response.read()
                        raise self._error(response)
                    parser = SseParser()
                    for line in response.iter_lines():
                        failures = 0
                        sse = parser.feed(line)
                        if sse is None or sse.event not in ("output", "end"):
                            continue
                        payload = json.loads(sse.data)
                        if sse.event == "end":
                            yield "end", payload
                            return
                        if sse.id:
                            last = int(sse.id)
                        yield "output", payload
                    if not follow:
                        return
            except httpx.TransportError as exc:
                if last is None and failures == 0 and isinstance(
                        exc, httpx.ConnectError | httpx.ConnectTimeout):
                    raise self._unreachable(exc) from None
            failures += 1
            if failures > retries:
                raise CannotConnect(f"lost the log stream of task {task_id} on "
                                    f"{self.base_url}; gave up after {retries} reconnects")
            self._sleep(min(0.5 * 2 ** (failures - 1), 5.0))

    def _call(self, method: str, path: str, *, params: Any = None, json: Any = None,
              timeout: float | None = None) -> Any:
        try:
            response = self._http.request(
                method, path, params=params, json=json,
                timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
            )
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None
        if response.status_code >= 400:
            raise self._error(response)
        try:
            return response.json()
        except ValueError:
            raise ApiError(response.status_code,
                           f"the server answered with something that is not JSON: "
                           f"{response.text[:200]!r}") from None

    def _unreachable(self, exc: httpx.TransportError) -> CannotConnect:
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            return CannotConnect(f"cannot reach taskyard at {self.base_url}: {exc}; "
                                 "is `taskyard serve` running?")
        return CannotConnect(f"lost the connection to taskyard at {self.base_url}: "
                             f"{exc or type(exc).__name__}")

    @staticmethod
    def _error(response: httpx.Response) -> ApiError:
        try:
            detail = response.json().get("detail")
        except (ValueError, AttributeError):
            detail = response.text.strip()[:200] or None
        kind = HistoryGone if response.status_code == 410 else ApiError
        return kind(response.status_code, detail)
