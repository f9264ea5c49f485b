"""What every request passes before a route sees it (the HTTP side of security issue #14).

- **Framing.** A request with both `Content-Length` and `Transfer-Encoding` is refused (400),
  as RFC 9112 §6.1 allows: the two disagree on where the body ends, and a proxy in front may
  pick the other. A `Content-Length` over the limit is refused before anything is read (413).
- **Host and Origin, in open mode.** No token stands between a web page and an open-mode API
  on loopback, so only loopback names and `TASKYARD_ALLOWED_HOSTS` are served (400 otherwise:
  DNS rebinding), and a request a page sends from elsewhere, which says so in `Origin`, is
  refused (403: a WebSocket needs no rebinding to reach loopback). Once tokens are needed,
  a page cannot send one it does not have, and any name is served.
- **The caller before the body.** A request that carries a body and whose caller would be
  refused anyway gets its 401 or 403 before a byte of the body is read.
- **Every body bounded as it arrives.** Whatever its headers say, a body is counted as it is
  received, and the first message past the limit ends it with 413.

Each refusal that leaves a body unread closes the connection after the answer.
"""

import functools
import ipaddress
from urllib.parse import urlsplit

from fastapi import HTTPException
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from api.auth import (
    ADMIN,
    CALLER_KEY,
    ActiveTokens,
    admin_refusal,
    identify,
    identify_without_lookup,
    in_open_mode,
    token_in,
)
from api.errors import STORAGE_ERRORS, storage_problem, storage_unavailable
from models.database import Database
from models.settings import Settings

CLOSE = {"Connection": "close"}


class BodyTooLarge(HTTPException):
    """Raised by `receive` past the limit; FastAPI's own, so that its body reading lets it
    through to the app's error handler unchanged."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body is larger than {limit} bytes", headers=CLOSE)


def _name(host: str) -> str:
    """The name in a Host header or an allowed-host entry: no port, no brackets, lower case."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    name, colon, port = host.rpartition(":")
    return name if colon and (port.isdigit() or not port) else host


@functools.lru_cache(maxsize=256)  # clients send the same few
def _is_loopback(name: str) -> bool:
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class RequestGuard:
    """ASGI middleware: the checks of this module's docstring, in that order."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        settings: Settings,
        database: Database,
        tokens: ActiveTokens,
        admin_token: str,
        max_body_bytes: int,
    ) -> None:
        self._app = app
        self._settings = settings
        self._database = database
        self._tokens = tokens
        self._admin_token = admin_token
        self._limit = max_body_bytes
        entries = settings.allowed_host_names
        self._any_host = "*" in entries
        self._allowed = frozenset(_name(entry) for entry in entries)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self._app(scope, receive, send)
            return
        length = encoding = host = origin = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = value
            elif name == b"transfer-encoding":
                encoding = value
            elif name == b"host":
                host = value
            elif name == b"origin":
                origin = value
        try:
            refusal = self._framing(length, encoding) if kind == "http" else None
            if refusal is None:
                refusal = await self._foreign(host, origin)
            if refusal is None and (encoding is not None or length not in (None, b"0")):
                refusal = await self._caller_first(scope)
        except STORAGE_ERRORS as exc:
            problem = storage_problem(exc)
            if problem is None:
                raise
            refusal = storage_unavailable(problem)
        if refusal is None:
            await self._app(scope, self._bounded(receive) if kind == "http" else receive, send)
        elif kind == "websocket":
            await _deny(WebSocket(scope, receive, send), refusal)
        else:
            await refusal(scope, receive, send)

    def _framing(self, length: bytes | None, encoding: bytes | None) -> Response | None:
        if length is not None and encoding is not None:
            return _refusal(
                400,
                "a request may not carry both Content-Length and "
                "Transfer-Encoding (RFC 9112, section 6.1)",
                CLOSE,
            )
        if length is not None and length.isdigit() and int(length) > self._limit:
            return _refusal(413, f"request body is larger than {self._limit} bytes", CLOSE)
        return None

    def _serves(self, name: str | None) -> bool:
        return name is not None and (_is_loopback(name) or name in self._allowed)

    async def _foreign(self, host: bytes | None, origin: bytes | None) -> Response | None:
        if self._any_host:
            return None
        host_ok = host is not None and self._serves(_name(host.decode("latin-1")))
        origin_ok = origin is None or self._serves(urlsplit(origin.decode("latin-1")).hostname)
        if (host_ok and origin_ok) or not await in_open_mode(
            self._settings, self._database, self._tokens
        ):
            return None
        served = (
            "only loopback names (localhost, 127.0.0.1, [::1]) and those in "
            "TASKYARD_ALLOWED_HOSTS (taskyard serve --allowed-host) are served in open "
            "mode, so that no web page can reach this API"
        )
        if not host_ok:
            shown = host.decode("latin-1") if host is not None else "(none)"
            return _refusal(400, f"Host {shown} is refused: {served}", CLOSE)
        assert origin is not None
        return _refusal(
            403, f"a request from a page at {origin.decode('latin-1')} is refused: {served}", CLOSE
        )

    async def _caller_first(self, scope: Scope) -> Response | None:
        token = await token_in(HTTPConnection(scope))
        try:
            if scope["path"].startswith("/admin/"):
                refusal = admin_refusal(token, self._admin_token)
                if refusal is not None:
                    raise refusal
                scope[CALLER_KEY] = ADMIN
                return None
            known = identify_without_lookup(
                token, admin_token=self._admin_token, settings=self._settings, tokens=self._tokens
            )
            scope[CALLER_KEY] = (
                known
                if known is not None
                else await run_in_threadpool(
                    identify,
                    token,
                    admin_token=self._admin_token,
                    settings=self._settings,
                    database=self._database,
                    tokens=self._tokens,
                )
            )
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


async def _deny(websocket: WebSocket, refusal: Response) -> None:
    """Refuse a WebSocket handshake with the HTTP answer, where the server can send one."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(refusal)
    else:
        await websocket.close(code=1008)
