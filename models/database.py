"""Opening the SQLite database that the API and the controller share.

Every connection runs in WAL mode with `synchronous=FULL`, so a commit is durable before the API
answers, and readers never block the single writer. Write transactions start with
`BEGIN IMMEDIATE`, so two processes that both write wait on the busy timeout instead of failing
with a lock-upgrade deadlock.

Opening also brings the schema to the newest revision (`models.migrations`), under the write
lock, so the API and the controller may both open a database at the same moment.
"""

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event
from sqlmodel import Session, create_engine

from models import (
    migrations,
    tables,  # noqa: F401  (registers the tables on SQLModel.metadata)
)

BUSY_TIMEOUT_MS = 10_000
# How long opening waits while another process migrates: upgrading a large database copies its
# tasks table, which may take longer than an ordinary write.
MIGRATION_BUSY_TIMEOUT_MS = 600_000


def _enter_wal(cursor: Any) -> None:
    """Switch to WAL. On a brand-new file several processes may try at once, and SQLite answers
    all but one "database is locked" at once, without its busy handler; so wait and try again."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _sqlite_engine(url: str, *, begin: str) -> Engine:
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 10})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below decide how transactions start.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        _enter_wal(cursor)
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql(begin)

    return engine


class _WriteSession(Session):
    """A session that tells this process's listeners after each commit."""

    def __init__(self, bind: Engine, listeners: list[Callable[[], None]]) -> None:
        super().__init__(bind, expire_on_commit=False)
        self._listeners = listeners

    def commit(self) -> None:
        super().commit()
        for listener in self._listeners:
            listener()


@dataclass(frozen=True)
class Database:
    """A pair of engines over one file: one whose transactions may write, one for reads."""

    writer: Engine
    reader: Engine
    _after_commit: list[Callable[[], None]] = field(default_factory=list, compare=False)

    def write(self) -> Session:
        return _WriteSession(self.writer, self._after_commit)

    def after_commit(self, listener: Callable[[], None]) -> None:
        """Call `listener` after every commit made through `write()` of this object (in this
        process): `taskyard serve` wakes its controller on the API's commits this way."""
        self._after_commit.append(listener)

    def committed(self) -> None:
        """Tell the `after_commit` listeners of a commit made on a `writer` connection
        directly, without `write()` (the API's group commit of new tasks)."""
        for listener in self._after_commit:
            listener()

    def read(self) -> Session:
        return Session(self.reader, expire_on_commit=False)

    def dispose(self) -> None:
        self.writer.dispose()
        self.reader.dispose()


def open_database(url: str) -> Database:
    """Open (and create where missing) the database at `url`, its schema at head.

    Raises `migrations.SchemaError` for a database whose schema taskyard does not know.
    """
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    database = Database(
        writer=_sqlite_engine(url, begin="BEGIN IMMEDIATE"),
        reader=_sqlite_engine(url, begin="BEGIN"),
    )
    try:
        if schema_revision(database) != migrations.head_revision():
            _migrate(database.writer)
    except BaseException:
        database.dispose()
        raise
    return database


def _migrate(writer: Engine) -> None:
    # Under the write lock migrate() reads the revision again: whoever waited here while
    # another process migrated finds it at head and does nothing.
    with writer.connect() as connection:
        sqlite = connection.connection.driver_connection
        assert sqlite is not None
        sqlite.execute(f"PRAGMA busy_timeout={MIGRATION_BUSY_TIMEOUT_MS}")
        try:
            with connection.begin():  # BEGIN IMMEDIATE: one process migrates at a time
                migrations.migrate(connection)
        finally:
            sqlite.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")


def schema_revision(database: Database) -> str | None:
    """The schema revision the database is at (None before it has one)."""
    with database.reader.connect() as connection:
        return migrations.current_revision(connection)
