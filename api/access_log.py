"""One access log line per request, in place of uvicorn's: method, path, status, milliseconds
and who called, on the `taskyard.access` logger. `api.app` installs it outermost, so that the
guard's refusals (400, 401, 413) are logged as well.

The caller is the one `api.auth` identified for the request (the guard, or a route's
dependency, leaves it in the scope under `CALLER_KEY`): a user's token id, `admin`, or `-`
where no token was needed or none was checked (open mode, `/healthz`). Never the token itself,
and never the query string, which a client may have filled with a secret of its own.

A line is written when the response is complete, so a stream's milliseconds are how long it
was open; a WebSocket's status is 101 once accepted, else the refusal's (403 where the app
closed it before accepting, as uvicorn answers then).
"""

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.auth import CALLER_KEY, Caller

log = logging.getLogger("taskyard.access")


def caller_label(caller: Caller | None) -> str:
    """What the log says about the caller: a token id, `admin`, or `-`."""
    if caller is None:
        return "-"
    if caller.is_admin:
        return "admin"
    return caller.user or "-"


class AccessLog:
    """ASGI middleware: logs each HTTP request and WebSocket session as it ends."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket") or not log.isEnabledFor(logging.INFO):
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0

        async def observed(message: Message) -> None:
            nonlocal status
            match message["type"]:
                case "http.response.start" | "websocket.http.response.start":
                    status = message["status"]
                case "websocket.accept":
                    status = 101
                case "websocket.close" if status == 0:
                    status = 403
            await send(message)

        try:
            await self._app(scope, receive, observed)
        except BaseException:
            # The server answers 500 to what the app let escape (before any response began).
            status = status or 500
            raise
        finally:
            self._write(scope, status, started)

    @staticmethod
    def _write(scope: Scope, status: int, started: float) -> None:
        method = scope.get("method", "WS")
        path = scope.get("path", "")
        ms = round((time.perf_counter() - started) * 1000, 1)
        caller = caller_label(scope.get(CALLER_KEY))
        client = scope.get("client")
        log.info(
            "%s %s %d %.1fms token=%s",
            method,
            path,
            status,
            ms,
            caller,
            extra={
                "method": method,
                "path": path,
                "status": status,
                "ms": ms,
                "token_id": caller,
                "client": client[0] if client else None,
            },
        )
