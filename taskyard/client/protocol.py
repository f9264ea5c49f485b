"""What `Client` and `AsyncClient` share, without any I/O: where the server is, the body of a
new task, how an answer becomes a value or an exception, Server-Sent Events, and the cursors
that carry a watch or a log stream across dropped connections (each client only opens the
connections and sleeps, in its own way).
"""

import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from taskyard.client.errors import ApiError, CannotConnect, ClientError, HistoryGone, api_error
from taskyard.client.records import LogEnd, OutputChunk, Transition

DEFAULT_SERVER = "http://127.0.0.1:8000"
SERVER_ENV = "TASKYARD_SERVER"
TOKEN_ENV = "TASKYARD_TOKEN"
# What `taskyard submit` asks for without flags; `resources=` given in part fills in the rest.
DEFAULT_RESOURCES = {"cpu": "1", "gpu": "0", "ram": "256MB", "storage": "100MB"}
# The longest one `?wait=` may be (the server's cap); `wait` and `run` repeat it as needed.
MAX_WAIT_STEP = 60.0
# Beyond a waiting request's own wait, how long its answer may take.
ANSWER_SECONDS = 30.0

# Told why a watch's connection dropped, which attempt comes next and after what pause.
RetryHook = Callable[[str, int, float], None]
# Told that the history is gone; answers the seq to resume after (None: the server's "now").
GoneHook = Callable[[HistoryGone], int | None]


def server_url(url: str | None) -> str:
    return (url or os.environ.get(SERVER_ENV) or DEFAULT_SERVER).rstrip("/")


def user_token(token: str | None) -> str | None:
    """`token`, else `$TASKYARD_TOKEN`; "" means none (open mode), whatever the environment."""
    if token is None:
        token = os.environ.get(TOKEN_ENV)
    return token or None


def check_wait_step(seconds: float) -> float:
    if not 0 < seconds <= MAX_WAIT_STEP:
        raise ValueError(
            f"wait_step must be more than 0 and at most {MAX_WAIT_STEP:g} s "
            "(the server's cap on one wait)"
        )
    return seconds


def task_body(
    code: str,
    resources: Mapping[str, str | int] | None,
    timeout: int | None,
    stdin: str | None,
    fields: Mapping[str, Any],
) -> dict[str, Any]:
    """The POST /tasks body: `resources` over `DEFAULT_RESOURCES` (counts may be ints),
    `timeout` as `timeout_seconds`, and any other field of the contract as given."""
    if timeout is not None and "timeout_seconds" in fields:
        raise TypeError("give timeout or timeout_seconds, not both")
    asked = {
        name: str(value)
        if isinstance(value, int) and not isinstance(value, bool) and name in ("cpu", "gpu")
        else value
        for name, value in (resources or {}).items()
    }
    body: dict[str, Any] = {
        "task_type": "execute_code",
        "code": code,
        "resources": {**DEFAULT_RESOURCES, **asked},
    }
    if timeout is not None:
        body["timeout_seconds"] = timeout
    if stdin is not None:
        body["stdin"] = stdin
    body.update(fields)
    return body


def batch_body(tasks: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The POST /batches body: each task as `task_body` makes it from its fields (`code`
    required; `resources` over `DEFAULT_RESOURCES`; anything else as given), so a task's
    `spec` goes back as it is."""
    bodies = []
    for index, task in enumerate(tasks):
        fields = dict(task)
        if "code" not in fields:
            raise TypeError(f"task {index} of the batch has no code")
        code = fields.pop("code")
        resources = fields.pop("resources", None)
        bodies.append(task_body(code, resources, None, None, fields))
    return {"tasks": bodies}


def query(**values: Any) -> dict[str, Any]:
    """The query parameters that are set."""
    return {name: value for name, value in values.items() if value is not None}


def wait_timeout(wait: float) -> float | None:
    """How long to let a request that waits `wait` seconds on the server take."""
    return wait + ANSWER_SECONDS if wait else None


def stream_timeout(read_timeout: float) -> httpx.Timeout:
    return httpx.Timeout(10.0, read=read_timeout)


def answer(response: httpx.Response) -> Any:
    """The JSON of a successful answer; the `ApiError` of an error answer."""
    if response.status_code >= 400:
        raise refusal(response)
    try:
        return response.json()
    except ValueError:
        raise ApiError(
            response.status_code,
            f"the server answered with something that is not JSON: {response.text[:200]!r}",
        ) from None


def refusal(response: httpx.Response) -> ApiError:
    """The exception for an error answer (its body already read)."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = response.text.strip()[:200] or None
    return api_error(response.status_code, detail, response.request.url.path)


def unreachable(exc: httpx.TransportError, base_url: str) -> CannotConnect:
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return CannotConnect(
            f"cannot reach taskyard at {base_url}: {exc}; is `taskyard serve` running?"
        )
    return CannotConnect(
        f"lost the connection to taskyard at {base_url}: {exc or type(exc).__name__}"
    )


def _backoff(failures: int) -> float:
    return min(0.5 * 2.0 ** (failures - 1), 5.0)


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


def _json_of(event: SseEvent) -> Any:
    try:
        return json.loads(event.data)
    except ValueError:
        raise ClientError(
            f"the server sent an event that is not JSON: {event.data[:200]!r}"
        ) from None


class WatchCursor:
    """A watch on GET /watch across its connections: what to ask each connection for
    (`since`, then `Last-Event-ID`), which transitions to pass on (each seq once, in order),
    and when to give up.

    A server that cannot be reached at all is an error at once. A connection that drops later
    is opened again; after `retries` attempts in a row that bring nothing (not even a
    heartbeat) the watch fails with `CannotConnect`. A watch on one task or one batch ends when
    the server closes it."""

    def __init__(
        self,
        base_url: str,
        *,
        task_id: str | None,
        phase: str | None,
        since: int | None,
        retries: int,
        batch: str | None = None,
    ) -> None:
        self.base_url = base_url
        # The server ends a watch on one task or one batch once it has ended.
        self.single = task_id is not None or batch is not None
        self.filters = query(task_id=task_id, phase=phase, batch=batch)
        self.retries = retries
        self.failures = 0
        self._resume_after = since
        self._last_seen = since  # never pass on a seq at or below this one
        self._first = True
        self._relisted = False  # a 410 right after a relist would loop forever: raise instead
        self._connected = False  # a server never reached is an error now, not after retries
        self._parser = SseParser()

    def request(self) -> tuple[dict[str, Any], dict[str, str]]:
        """The query and headers of the next connection."""
        params: dict[str, Any] = dict(self.filters)
        headers = {"Accept": "text/event-stream"}
        if self._resume_after is not None and self._first:
            params["since"] = self._resume_after
        elif self._resume_after is not None:
            headers["Last-Event-ID"] = str(self._resume_after)
        self._first = False
        self._parser = SseParser()
        return params, headers

    def refused(self, error: ApiError, on_gone: GoneHook | None) -> str | None:
        """An error answer: None to reconnect at once (a 410 that `on_gone` relisted from);
        why, for a 5xx once connected, to retry after a pause; anything else is raised."""
        if isinstance(error, HistoryGone) and on_gone is not None and not self._relisted:
            self._resume_after = on_gone(error)
            self._relisted = True
            return None
        if error.status < 500 or not self._connected:
            raise error
        return str(error)

    def opened(self) -> None:
        self._connected = True

    def line(self, line: str) -> Transition | None:
        """One line of the stream; the transition it completes, unless already passed on."""
        self.failures = 0  # any line, heartbeats included, shows the link is alive
        self._relisted = False
        event = self._parser.feed(line)
        if event is None or event.event != "transition":
            return None
        transition = Transition(_json_of(event))
        seq = int(transition.get("seq", event.id or 0))
        self._resume_after = seq if self._resume_after is None else max(seq, self._resume_after)
        if self._last_seen is not None and seq <= self._last_seen:
            return None
        self._last_seen = seq
        return transition

    def dropped(self, exc: httpx.TransportError) -> str:
        """Why the connection broke; `CannotConnect` where it never worked."""
        if not self._connected:
            raise unreachable(exc, self.base_url) from None
        return str(exc) or type(exc).__name__

    def failed(self, why: str) -> float:
        """The pause before the next connection; `CannotConnect` after `retries` in a row."""
        self.failures += 1
        if self.failures > self.retries:
            raise CannotConnect(
                f"lost the watch on taskyard at {self.base_url}: {why}; "
                f"gave up after {self.retries} reconnects"
            )
        return _backoff(self.failures)


class LogCursor:
    """A task's GET /tasks/{id}/logs across its connections, resumed with `Last-Event-ID`, each
    chunk once; ends with the server's `end` event (or, not following, with the stream)."""

    def __init__(
        self, base_url: str, task_id: str, *, follow: bool, stream: str | None, retries: int
    ) -> None:
        self.base_url = base_url
        self.task_id = task_id
        self.path = f"/tasks/{task_id}/logs"
        self.params = query(follow="true" if follow else "false", stream=stream)
        self.retries = retries
        self.ended = False
        self._last: int | None = None
        self._failures = 0
        self._parser = SseParser()

    def headers(self) -> dict[str, str]:
        self._parser = SseParser()
        headers = {"Accept": "text/event-stream"}
        if self._last is not None:
            headers["Last-Event-ID"] = str(self._last)
        return headers

    def line(self, line: str) -> OutputChunk | LogEnd | None:
        self._failures = 0
        event = self._parser.feed(line)
        if event is None or event.event not in ("output", "end"):
            return None
        if event.event == "end":
            self.ended = True
            return LogEnd(_json_of(event))
        if event.id:
            self._last = int(event.id)
        return OutputChunk(_json_of(event))

    def dropped(self, exc: httpx.TransportError) -> None:
        if (
            self._last is None
            and self._failures == 0
            and isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
        ):
            raise unreachable(exc, self.base_url) from None

    def failed(self) -> float:
        self._failures += 1
        if self._failures > self.retries:
            raise CannotConnect(
                f"lost the log stream of task {self.task_id} on "
                f"{self.base_url}; gave up after {self.retries} reconnects"
            )
        return _backoff(self._failures)
