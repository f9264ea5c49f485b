"""What every request passes before a route sees it (the HTTP side of security issue #14).

- **Framing.** A request with both `Content-Length` and `Transfer-Encoding` is refused (400),
  as RFC 9112 §6.1 allows: the two disagree on where the body ends, and a proxy in front may
  pick the other. A `Content-Length` over the limit is refused before anything is read (413).
- **The caller before the body.** A request that carries a body and whose caller would be
  refused anyway gets its 401 or 403 before a byte of the body is read.
- **Every body bounded as it arrives.** Whatever its headers say, a body is counted as it is
  received, and the first message past the limit ends it with 413.

Each refusal that leaves a body unread closes the connection after the answer.
"""

import sqlite3

from fastapi import HTTPException
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import OperationalError
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.auth import (
    CALLER_KEY,
    TokensSeen,
    admin_refusal,
    identify,
    identify_without_lookup,
    token_in,
)
from api.errors import storage_problem, storage_unavailable
from models.database import Database
from models.settings import Settings

CLOSE = {"Connection": "close"}


class BodyTooLarge(HTTPException):
    """Raised by `receive` past the limit; FastAPI's own, so that its body reading lets it
    through to the app's error handler unchanged."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body is larger than {limit} bytes", headers=CLOSE)


class RequestGuard:
    """ASGI middleware: the checks of this module's docstring, in that order."""

    def __init__(self, app: ASGIApp, *, settings: Settings, database: Database,
                 tokens: TokensSeen, admin_token: str, max_body_bytes: int) -> None:
        self._app = app
        self._settings = settings
        self._database = database
        self._tokens = tokens
        self._admin_token = admin_token
        self._limit = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        length = encoding = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = value
            elif name == b"transfer-encoding":
                encoding = value
        try:
            refusal = self._framing(length, encoding)
            if refusal is None and (encoding is not None or length not in (None, b"0")):
                refusal = await self._caller_first(scope)
        except (OperationalError, sqlite3.OperationalError) as exc:
            problem = storage_problem(exc)
            if problem is None:
                raise
            refusal = storage_unavailable(problem)
        if refusal is None:
            await self._app(scope, self._bounded(receive), send)
        else:
            await refusal(scope, receive, send)

    def _framing(self, length: bytes | None, encoding: bytes | None) -> Response | None:
        if length is not None and encoding is not None:
            return _refusal(400, "a request may not carry both Content-Length and "
                                 "Transfer-Encoding (RFC 9112, section 6.1)", CLOSE)
        if length is not None and length.isdigit() and int(length) > self._limit:
            return _refusal(413, f"request body is larger than {self._limit} bytes", CLOSE)
        return None

    async def _caller_first(self, scope: Scope) -> Response | None:
        token = await token_in(HTTPConnection(scope))
        try:
            if scope["path"].startswith("/admin/"):
                refusal = admin_refusal(token, self._admin_token)
                if refusal is not None:
                    raise refusal
                return None
            known = identify_without_lookup(token, admin_token=self._admin_token,
                                            settings=self._settings, tokens=self._tokens)
            scope[CALLER_KEY] = known if known is not None else await run_in_threadpool(
                identify, token, admin_token=self._admin_token, settings=self._settings,
                database=self._database, tokens=self._tokens)
        except HTTPException as exc:
            return _refusal(exc.status_code, str(exc.detail), {**(exc.headers or {}), **CLOSE})
        return None

    def _bounded(self, receive: Receive) -> Receive:
        limit = self._limit
        received = 0

        async def bounded() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        return bounded


def _refusal(status: int, detail: str, headers: dict[str, str]) -> Response:
    return JSONResponse(status_code=status, content={"detail": detail}, headers=headers)

