"""Error bodies: every 4xx carries a JSON `detail` that names the field or the object.

Validation errors are rewritten without the offending input, which may be megabytes of code or
text that cannot even be encoded (a lone surrogate), so that an error never becomes a 500.
"""

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException


def field_error(loc: list[str | int], msg: str, kind: str) -> dict[str, Any]:
    return {"loc": loc, "msg": msg, "type": kind}


def _clean(error: dict[str, Any]) -> dict[str, Any]:
    msg = str(error.get("msg", "invalid value"))
    loc = [part for part in error.get("loc", ()) if isinstance(part, str | int)]
    return field_error(loc, msg.encode("utf-8", "replace").decode("utf-8"),
                       str(error.get("type", "value_error")))


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse(
        status_code=422,
        content={"detail": [_clean(error) for error in exc.errors()]},
    )


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return JSONResponse(
        status_code=exc.status_code, content={"detail": exc.detail}, headers=exc.headers
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
