"""Who is calling: the admin, a user (by bearer token), or anyone (open mode).

Open mode is one person on one machine: the service listens on loopback only, no active
(unrevoked) user token exists, and `TASKYARD_OPEN_MODE` is not false. It ends with the first
user token and comes back when the last one is revoked. Outside it every task endpoint needs
`Authorization: Bearer <token>`: 401 without one, or for an unknown or revoked one. A token is
read from that header only, never from the URL, where logs, history and `Referer` would keep
it. A task belongs to the token that created it; other users get 404 for it. The admin token
is accepted everywhere and sees every task; admin endpoints accept only it (401 without a
token, 403 with another).
"""

import hmac
import time
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session, col, select
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection

from models.database import Database
from models.settings import Settings
from models.tables import ApiToken, Task
from models.tokens import hash_token

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
# Where `api.guard` and the dependencies below leave the caller they identified: a route
# handed on asks again, and `api.access_log` names it.
CALLER_KEY = "taskyard.caller"

_bearer = HTTPBearer(auto_error=False)
# How long an answer read from the database is trusted: another API process may create or
# revoke a token meanwhile.
TRUST_SECONDS = 1.0


@dataclass(frozen=True)
class Caller:
    is_admin: bool = False
    user: str | None = None  # the token id of a user; None for the admin and in open mode

    def sees(self, task: Task) -> bool:
        return self.user is None or task.owner == self.user


ADMIN = Caller(is_admin=True)


def _is_admin(token: str, expected: str) -> bool:
    return hmac.compare_digest(token.encode(), expected.encode())


class ActiveTokens:
    """Whether any active (unrevoked) user token exists: open mode asks on every request that
    comes without a token. An answer read from the database is trusted for `TRUST_SECONDS`;
    this process's token routes say at once when they create or revoke one."""

    def __init__(self) -> None:
        self.exist = False
        self.checked_at = -1.0

    def known(self) -> bool | None:
        """The answer where it can be trusted without reading the database; else None."""
        if time.monotonic() - self.checked_at <= TRUST_SECONDS:
            return self.exist
        return None

    def any(self, session: Session) -> bool:
        known = self.known()
        if known is not None:
            return known
        now = time.monotonic()
        exist = (
            session.exec(
                select(ApiToken.id).where(col(ApiToken.revoked_at).is_(None)).limit(1)
            ).first()
            is not None
        )
        if self.checked_at <= now:  # else a token was created while this read ran: it stands
            self.exist, self.checked_at = exist, now
        return exist

    def created(self) -> None:
        """A token was created here: open mode ends now, not a second from now."""
        self.exist, self.checked_at = True, time.monotonic()

    def revoked(self) -> None:
        """A token was revoked here: the next request without a token reads again."""
        self.checked_at = -1.0


def may_open(settings: Settings) -> bool:
    """Whether open mode can hold at all: allowed, and on loopback only."""
    return settings.open_mode and settings.host in LOOPBACK


def open_mode(settings: Settings, session: Session, tokens: ActiveTokens) -> bool:
    return may_open(settings) and not tokens.any(session)


async def in_open_mode(settings: Settings, database: Database, tokens: ActiveTokens) -> bool:
    """`open_mode`, reading the database (in the thread pool) only where it must."""
    if not may_open(settings):
        return False
    known = tokens.known()
    if known is not None:
        return not known

    def read() -> bool:
        with database.read() as session:
            return open_mode(settings, session, tokens)

    return await run_in_threadpool(read)


def _token_required() -> HTTPException:
    return HTTPException(
        401,
        "a bearer token is required: send Authorization: Bearer <token>",
        headers={"WWW-Authenticate": "Bearer"},
    )


def identify_without_lookup(
    token: str | None, *, admin_token: str, settings: Settings, tokens: ActiveTokens
) -> Caller | None:
    """The caller where no database read is needed to tell (no token while open mode is known,
    the admin token); None where `identify` must look. Raises 401 like `identify`."""
    if token is None:
        if not may_open(settings):
            raise _token_required()
        seen = tokens.known()
        if seen is None:
            return None
        if seen:
            raise _token_required()
        return Caller()
    if _is_admin(token, admin_token):
        return Caller(is_admin=True)
    return None


def identify(
    token: str | None,
    *,
    admin_token: str,
    settings: Settings,
    database: Database,
    tokens: ActiveTokens,
) -> Caller:
    """The caller behind `token` (None: no token given); raises 401 where it is no one."""
    known = identify_without_lookup(
        token, admin_token=admin_token, settings=settings, tokens=tokens
    )
    if known is not None:
        return known
    with database.read() as session:
        if token is None:
            if open_mode(settings, session, tokens):
                return Caller()
            raise _token_required()
        row = session.exec(
            select(ApiToken).where(col(ApiToken.token_hash) == hash_token(token))
        ).first()
    if row is None or row.revoked_at is not None:
        raise HTTPException(
            401, "this token is unknown or revoked", headers={"WWW-Authenticate": "Bearer"}
        )
    return Caller(user=row.id)


async def bearer_credentials(request: Request) -> HTTPAuthorizationCredentials | None:
    """The `Authorization: Bearer` credentials, read as the `HTTPBearer` dependency does."""
    return await _bearer(request)


def token_of(credentials: HTTPAuthorizationCredentials | None) -> str | None:
    if credentials is not None and credentials.scheme.lower() == "bearer":
        return credentials.credentials
    return None


async def token_in(connection: HTTPConnection) -> str | None:
    """The bearer token of a request that no route has yet, found as the routes find it."""
    return token_of(await _bearer(connection))


def admin_refusal(token: str | None, admin_token: str) -> HTTPException | None:
    """Why an admin endpoint refuses this token (401 none, 403 another); None: it is the
    admin's."""
    if token is None:
        return HTTPException(
            401,
            "admin token required: send Authorization: Bearer <token>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not _is_admin(token, admin_token):
        return HTTPException(403, "this token is not the admin token")
    return None


async def require_caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    already: Caller | None = request.scope.get(CALLER_KEY)
    if already is not None:
        return already
    # On the event loop where no database read is needed (open mode, the admin): a trip
    # through the thread pool costs more than a whole submission does otherwise.
    token = token_of(credentials)
    state = request.app.state
    known = identify_without_lookup(
        token, admin_token=state.admin_token, settings=state.settings, tokens=state.active_tokens
    )
    if known is not None:
        request.scope[CALLER_KEY] = known  # for the access log
        return known
    caller = await run_in_threadpool(
        identify,
        token,
        admin_token=state.admin_token,
        settings=state.settings,
        database=state.database,
        tokens=state.active_tokens,
    )
    request.scope[CALLER_KEY] = caller  # a submission handed on to its route asks again
    return caller


def require_admin(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    refusal = admin_refusal(token_of(credentials), request.app.state.admin_token)
    if refusal is not None:
        raise refusal
    request.scope[CALLER_KEY] = ADMIN  # for the access log


CallerDep = Annotated[Caller, Depends(require_caller)]
AdminOnly = Depends(require_admin)
