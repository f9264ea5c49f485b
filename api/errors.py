"""Error bodies: every 4xx and 503 carries a JSON `detail` that names the field or the problem.

`detail` is either one sentence or a list of field errors (`loc`, `msg`, `type`); `ErrorBody` is
that shape, and `error_responses()` declares it on the routes for the OpenAPI document, so
that what the document promises is what the API answers.

Validation errors are rewritten without the offending input, which may be megabytes of code or
text that cannot even be encoded (a lone surrogate), so that an error never becomes a 500. A body
that cannot be parsed (nested too deeply, not UTF-8, a number with thousands of digits) is a
422 saying so. A storage failure (the data disk full, the database locked by another process
for longer than the busy timeout, an I/O error; on PostgreSQL also a server that cannot be
reached, is shutting down or is out of connections) is a 503 with `Retry-After`: nothing was
stored, and the same request can be sent again once the storage recovers.
"""

import logging
import sqlite3
from dataclasses import dataclass
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Mount

log = logging.getLogger("taskyard.api")


class FieldError(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ErrorBody(BaseModel):
    """The body of every 4xx and 503 answer."""

    detail: str | list[FieldError]


_DESCRIPTIONS = {
    401: "No bearer token where one is required, or an unknown or revoked one",
    403: "A token that is not the admin token, on an admin endpoint",
    404: "No such task or batch (or it belongs to another user), or no such token",
    405: "This method is not allowed on this path",
    409: "The request conflicts with the task's phase or a pending request",
    410: "The history to resume from was compacted away",
    413: "The request body, code or stdin is larger than the configured limit",
    415: "A request body that is not sent as Content-Type: application/json",
    422: "A field, parameter or body that is not valid; `detail` names it",
    429: "The caller's quota of unfinished tasks or CPUs is used up",
    503: "Storage is unavailable (disk full, database locked) or capacity is not known yet; "
    "retry after Retry-After seconds",
}

_RETRY_AFTER_HEADER = {
    "Retry-After": {
        "description": "Seconds to wait before sending the request again",
        "required": True,
        "schema": {"type": "integer", "minimum": 0},
    },
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI `responses` entries of these error codes, all with the `ErrorBody` shape."""
    result: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        entry: dict[str, Any] = {"model": ErrorBody, "description": _DESCRIPTIONS[code]}
        if code == 503:
            entry["headers"] = _RETRY_AFTER_HEADER
        result[code] = entry
    return result


def field_error(loc: list[str | int], msg: str, kind: str) -> dict[str, Any]:
    return {"loc": loc, "msg": msg, "type": kind}


def _text(value: object) -> str:
    """`value` as text that can always be encoded (a lone surrogate becomes '?')."""
    return str(value).encode("utf-8", "replace").decode("utf-8")


def _clean(error: dict[str, Any]) -> dict[str, Any]:
    loc: list[str | int] = [
        part if isinstance(part, int) else _text(part)
        for part in error.get("loc", ())
        if isinstance(part, str | int)
    ]
    # pydantic starts the message of a validator's ValueError with "Value error, ": noise.
    msg = _text(error.get("msg", "invalid value")).removeprefix("Value error, ")
    return field_error(loc, msg, _text(error.get("type", "value_error")))


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse(
        status_code=422,
        content={"detail": [_clean(error) for error in exc.errors()]},
    )


def _unparsable_body(cause: BaseException | None) -> dict[str, Any] | None:
    """Why FastAPI could not parse a JSON body, where it says only "error parsing the body"."""
    if isinstance(cause, RecursionError):
        return field_error(
            ["body"], "the JSON body is nested too deeply to be read", "json_too_deep"
        )
    if isinstance(cause, UnicodeDecodeError):
        return field_error(["body"], "the body is not valid UTF-8 text", "json_invalid")
    if isinstance(cause, ValueError):
        if "digits" in str(cause):
            return field_error(
                ["body"], "a number in the JSON body has too many digits", "json_number_too_long"
            )
        return field_error(["body"], f"the body is not valid JSON: {_text(cause)}", "json_invalid")
    return None


_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def _allowed_methods(request: Request) -> str | None:
    """Every method that some route serves on this path. Starlette names only those of the
    first route that matches the path, and GET /tasks/{id} and DELETE /tasks/{id} are two.
    (A mount, such as /static, matches every method; it names its own.)"""
    routes = [route for route in request.app.router.routes if not isinstance(route, Mount)]
    allowed = [
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes
        )
    ]
    return ", ".join(allowed) or None


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail, headers = exc.detail, exc.headers
    if exc.status_code == 400:
        unparsable = _unparsable_body(exc.__cause__)
        if unparsable is not None:
            return JSONResponse(status_code=422, content={"detail": [unparsable]})
    elif exc.status_code == 405 and (allowed := _allowed_methods(request)) is not None:
        detail = f"{request.method} is not allowed here; allowed: {allowed}"
        headers = {**(headers or {}), "Allow": allowed}
    return JSONResponse(status_code=exc.status_code, content={"detail": detail}, headers=headers)


@dataclass(frozen=True)
class StorageProblem:
    message: str
    retry_after: int


# SQLite's primary result codes (the extended ones, such as SQLITE_IOERR_WRITE, start with these).
_PROBLEMS = {
    "SQLITE_FULL": StorageProblem(
        "the data disk is full: nothing new can be stored until space is freed; "
        "what is already stored is intact",
        30,
    ),
    "SQLITE_BUSY": StorageProblem(
        "the database is locked by another writer for longer than the busy timeout", 2
    ),
    "SQLITE_LOCKED": StorageProblem(
        "the database is locked by another writer for longer than the busy timeout", 2
    ),
    "SQLITE_IOERR": StorageProblem(
        "the database could not be read or written (disk I/O error)", 10
    ),
    "SQLITE_CANTOPEN": StorageProblem("the database file cannot be opened", 10),
    "SQLITE_READONLY": StorageProblem("the database is read-only", 30),
}
# Where the driver gives no error name: SQLite's own messages for the same codes.
_MESSAGES = {
    "database or disk is full": "SQLITE_FULL",
    "database is locked": "SQLITE_BUSY",
    "database table is locked": "SQLITE_LOCKED",
    "disk i/o error": "SQLITE_IOERR",
    "unable to open database file": "SQLITE_CANTOPEN",
    "attempt to write a readonly database": "SQLITE_READONLY",
}


_UNREACHABLE = StorageProblem("the database server cannot be reached", 5)
# PostgreSQL's SQLSTATEs, each code or class (its first two characters) with its problem.
_POSTGRES_PROBLEMS = {
    "53100": _PROBLEMS["SQLITE_FULL"],
    "53": StorageProblem("the database server is out of memory or connections", 5),
    "55P03": StorageProblem(
        "the database is locked by another writer for longer than the lock timeout", 2
    ),
    "40P01": StorageProblem("the database gave up the request to resolve a lock conflict", 1),
    "40001": StorageProblem("the database gave up the request to resolve a lock conflict", 1),
    "57P01": StorageProblem("the database server is shutting down", 5),
    "57P02": StorageProblem("the database server is shutting down", 5),
    "57P03": StorageProblem("the database server is starting up", 5),
    "08": _UNREACHABLE,
    "25006": _PROBLEMS["SQLITE_READONLY"],
    "58030": _PROBLEMS["SQLITE_IOERR"],
}

# The errors that may come from the storage, as raised through SQLAlchemy or by the drivers
# themselves (the submission writer uses their connections directly).
STORAGE_ERRORS = (DBAPIError, sqlite3.OperationalError, psycopg.Error)


def storage_problem(exc: BaseException) -> StorageProblem | None:
    """The storage failure behind a database error, or None where it is something else."""
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    if isinstance(orig, psycopg.Error):
        return _postgres_problem(orig)
    if not isinstance(orig, sqlite3.OperationalError):
        return None
    name = getattr(orig, "sqlite_errorname", "") or ""
    for code, problem in _PROBLEMS.items():
        if name == code or name.startswith(code + "_"):
            return problem
    text = str(orig).lower()
    for message, code in _MESSAGES.items():
        if message in text:
            return _PROBLEMS[code]
    return None


def _postgres_problem(error: psycopg.Error) -> StorageProblem | None:
    state = error.sqlstate
    if state is None:
        # No answer from the server: it refused the connection, or closed it.
        return _UNREACHABLE if isinstance(error, psycopg.OperationalError) else None
    return _POSTGRES_PROBLEMS.get(state) or _POSTGRES_PROBLEMS.get(state[:2])


def storage_unavailable(problem: StorageProblem) -> JSONResponse:
    return JSONResponse(
        status_code=503,
        content={
            "detail": f"storage unavailable: {problem.message}; retry in {problem.retry_after} s"
        },
        headers={"Retry-After": str(problem.retry_after)},
    )


async def _storage_error(_request: Request, exc: Exception) -> JSONResponse:
    problem = storage_problem(exc)
    if problem is None:
        raise exc  # a bug, not the storage: a 500 with its traceback in the log
    log.warning("answering 503: %s (%s)", problem.message, getattr(exc, "orig", exc))
    return storage_unavailable(problem)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    for kind in STORAGE_ERRORS:
        app.add_exception_handler(kind, _storage_error)
