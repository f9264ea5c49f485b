"""The client's exceptions. Every failure a caller of `Client` or `AsyncClient` should handle is
a `ClientError`; the CLI prints it as one line and exits with its `exit_code`.

    ClientError                 base
    ├── ApiError                the server answered 4xx/5xx: `status` and its `detail`
    │   ├── InvalidRequest      400, 413, 415, 422: the request is wrong; `detail` names fields
    │   ├── Unauthorized        401, 403: no token, an unknown or revoked one, not the admin's
    │   ├── TaskNotFound        404 for a task: `task_id` (another user's task is not found too)
    │   ├── Conflict            409: the task is already terminal, or a reset makes no sense
    │   ├── HistoryGone         410 from /watch: the history to resume from was compacted
    │   ├── QuotaExceeded       429: this user's unfinished tasks are at their limit
    │   └── ServerError         5xx; 503 means storage is busy or full: send it again later
    ├── CannotConnect           the server could not be reached, or the connection broke
    └── WaitTimeout             `wait` or `run` gave up before the task ended: `task` as last read
"""

import json
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from taskyard.client.records import Task

EXIT_API_ERROR = 1
EXIT_CANNOT_CONNECT = 3
# Request locations FastAPI puts in front of a field name; a user thinks of `resources.cpu`.
_LOC_PREFIXES = {"body", "query", "path", "header"}
_TASK_PATH = re.compile(r"^(?:/admin)?/tasks/([^/]+)")


class ClientError(Exception):
    exit_code = EXIT_API_ERROR


class ApiError(ClientError):
    def __init__(self, status: int, detail: Any) -> None:
        self.status = status
        self.detail = detail
        super().__init__(render_detail(detail) or f"the server answered HTTP {status}")


class InvalidRequest(ApiError):
    """The server refused the request as it is (a field out of range, a body too large)."""


class Unauthorized(ApiError):
    """The token is missing, unknown or revoked, or an admin route was called without the
    admin token."""


class TaskNotFound(ApiError):
    def __init__(self, status: int, detail: Any, task_id: str) -> None:
        super().__init__(status, detail or f"task {task_id} not found")
        self.task_id = task_id


class Conflict(ApiError):
    """The request does not fit the task's state (cancelling a task that already ended)."""


class HistoryGone(ApiError):
    """The watch history to resume from is gone; the client must restart from current state."""


class QuotaExceeded(ApiError):
    """This user's unfinished tasks (or their CPUs) are at the limit; wait for some to end."""


class ServerError(ApiError):
    """The server failed (5xx); a 503 says storage is busy or full and the request may be
    sent again."""


class CannotConnect(ClientError):
    exit_code = EXIT_CANNOT_CONNECT


class WaitTimeout(ClientError):
    """`wait` or `run` waited as long as it was allowed to, and the task had not ended."""

    def __init__(self, task: "Task", waited: float) -> None:
        self.task = task
        super().__init__(
            f"task {task['id']} is still {task['status']['phase']} after {waited:g} s of waiting"
        )


_BY_STATUS: dict[int, type[ApiError]] = {
    400: InvalidRequest,
    413: InvalidRequest,
    415: InvalidRequest,
    422: InvalidRequest,
    401: Unauthorized,
    403: Unauthorized,
    409: Conflict,
    410: HistoryGone,
    429: QuotaExceeded,
}


def api_error(status: int, detail: Any, path: str) -> ApiError:
    """The exception for an error answer to a request on `path`."""
    task = _TASK_PATH.match(path)
    if status == 404 and task is not None:
        return TaskNotFound(status, detail, task.group(1))
    kind = ServerError if status >= 500 else _BY_STATUS.get(status, ApiError)
    return kind(status, detail)


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
