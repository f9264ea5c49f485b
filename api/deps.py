"""Typed dependencies shared by the routes: settings, database sessions, and the JSON check
on request bodies."""

import functools
import re
from collections.abc import Iterator
from email.message import Message
from typing import Annotated

from fastapi import Depends, HTTPException, Query, Request
from pydantic import BeforeValidator
from sqlmodel import Session

from models.database import Database
from models.phases import Phase
from models.settings import Settings


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


def read_session(database: Annotated[Database, Depends(get_database)]) -> Iterator[Session]:
    with database.read() as session:
        yield session


def write_session(database: Annotated[Database, Depends(get_database)]) -> Iterator[Session]:
    with database.write() as session:
        yield session


# A resume point (`?since=`, `Last-Event-ID`) is a row's seq: at most SQLite's largest INTEGER.
MAX_SEQ = 2**63 - 1
SEQ_PATTERN = r"^\s*[0-9]{1,18}\s*$"
# The OpenAPI schema of a Last-Event-ID header: a string of digits when it is sent at all
# (`type` next to the optional parameter's `anyOf` rules out its `null`).
SEQ_HEADER_SCHEMA = {"type": "string", "pattern": SEQ_PATTERN}


def parse_seq(header: str, what: str) -> int:
    """A Last-Event-ID header as a seq; 422 where it is not one (ASCII digits, at most 18)."""
    if not re.fullmatch(SEQ_PATTERN, header):
        raise HTTPException(422, f"Last-Event-ID must be {what} (up to 18 ASCII digits)")
    return int(header)


@functools.lru_cache(maxsize=64)  # clients send the same few; parsing one costs more
def is_json(content_type: str) -> bool:
    """Whether a Content-Type header says JSON (application/json or application/*+json)."""
    header = Message()
    header["content-type"] = content_type
    subtype = header.get_content_subtype()
    return header.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


async def require_json(request: Request) -> None:
    """415 for a request body that is not sent as JSON; no body at all is fine."""
    if not await request.body():
        return
    if not is_json(request.headers.get("content-type", "")):
        given = request.headers.get("content-type") or "none"
        raise HTTPException(
            415,
            f"the request body must be JSON sent with Content-Type: application/json (got {given})",
        )


def _phase_in_any_case(value: object) -> object:
    """`running` or `RUNNING` as `Running`; anything else is left for the enum to refuse."""
    if isinstance(value, str):
        return Phase.named(value) or value
    return value


# `?phase=` on GET /tasks and GET /watch: a phase name in any case.
PhaseQuery = Annotated[
    Phase | None,
    BeforeValidator(_phase_in_any_case),
    Query(description="a phase, in any case (`Running`, `running`)"),
]

SettingsDep = Annotated[Settings, Depends(get_settings)]
DatabaseDep = Annotated[Database, Depends(get_database)]
ReadSession = Annotated[Session, Depends(read_session)]
WriteSession = Annotated[Session, Depends(write_session)]
JsonBody = Depends(require_json)
