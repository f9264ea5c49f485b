"""POST /tasks for the request nearly every client sends, without FastAPI's per-request
machinery; every other request goes on to the route in `api.tasks`, unchanged.

Solving the route's dependencies and parameters costs FastAPI more than storing the task
does. A request qualifies for this path when it has no query parameters, says its body is
JSON, and that body parses (`json.loads`, as FastAPI does) and validates as a `TaskCreate`.
The caller is identified before the body is read (`api.guard` has done so already), the task
admitted, stored and answered by the same functions the route uses (`require_caller`,
`store_task`, `created`), and their 401/413/422/429/503 reach the app's error handlers as the
route's do. Anything else (a bad body, `?wait=`, another content type) is handed to the route
with its body, so every error answer stays FastAPI's own.
"""

import json
from typing import Any

from starlette.requests import Request
from starlette.routing import Match, Route
from starlette.types import Message, Receive, Scope, Send

from api.auth import bearer_credentials, require_caller
from api.deps import is_json
from api.tasks import created, store_task
from models.schemas import TaskCreate

# Set on a request this path handed on, so that routing passes this route by.
_HANDED_ON = "taskyard.fast_submit.handed_on"


class FastSubmitRoute(Route):
    """Matched before the route of `api.tasks` (and left out of the OpenAPI document)."""

    def __init__(self) -> None:
        super().__init__("/tasks", _FastSubmit(), methods=["POST"], include_in_schema=False)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        # Never a partial match: a wrong method is the route's to answer (405).
        if scope.get("method") != "POST" or _HANDED_ON in scope:
            return Match.NONE, {}
        return super().matches(scope)


def _plain_submission(request: Request, body: bytes) -> TaskCreate | None:
    """The task, where the request takes this path; None where it goes to the route."""
    if request.scope.get("query_string") or not is_json(request.headers.get("content-type", "")):
        return None
    try:
        return TaskCreate.model_validate(json.loads(body))
    except (ValueError, RecursionError):  # ValidationError is a ValueError, as are JSON errors
        return None


class _FastSubmit:
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        caller = await require_caller(request, await bearer_credentials(request))
        body = await request.body()
        task = _plain_submission(request, body)
        if task is None:
            await _hand_on(scope, body, receive, send)
            return
        values = await store_task(request, task, caller)
        await created(values)(scope, receive, send)


async def _hand_on(scope: Scope, body: bytes, receive: Receive, send: Send) -> None:
    scope[_HANDED_ON] = True
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed() -> Message:
        return pending.pop() if pending else await receive()

    router: Any = scope["router"]
    await router(scope, replayed, send)
