"""Typed dependencies shared by the routes: settings and database sessions."""

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlmodel import Session

from models.database import Database
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


SettingsDep = Annotated[Settings, Depends(get_settings)]
DatabaseDep = Annotated[Database, Depends(get_database)]
ReadSession = Annotated[Session, Depends(read_session)]
WriteSession = Annotated[Session, Depends(write_session)]
