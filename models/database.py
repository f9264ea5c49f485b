"""Opening the database that the API and the controller share: a SQLite file (the default), or
PostgreSQL where `TASKYARD_DATABASE_URL` says `postgresql://…` (`models.postgres`).

On SQLite every connection runs in WAL mode with `synchronous=FULL`, so a commit is durable
before the API answers, and readers never block the single writer. Write transactions start with
`BEGIN IMMEDIATE`, so two processes that both write wait on the busy timeout instead of failing
with a lock-upgrade deadlock. On Postgres every write transaction first takes one advisory lock,
to the same effect: one writer at a time, readers never blocked (see `models.postgres`).

Opening also brings the schema to the newest revision (`models.migrations`), under the write
lock, so the API and the controller may both open a database at the same moment.
"""

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Engine, event
from sqlmodel import Session, create_engine

from models import (
    migrations,
    postgres,
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


class CommitWatch(Protocol):
    """A number that changes whenever anyone commits a write (another process included)."""

    def version(self) -> int: ...

    def close(self) -> None: ...


class _DataVersion:
    """SQLite's `PRAGMA data_version` on a connection of its own: it moves at every commit
    made on any other connection (a few microseconds to read)."""

    def __init__(self, path: str) -> None:
        self._connection = sqlite3.connect(path, check_same_thread=False)

    def version(self) -> int:
        value: int = self._connection.execute("PRAGMA data_version").fetchone()[0]
        return value

    def close(self) -> None:
        self._connection.close()


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

    @property
    def is_postgres(self) -> bool:
        return self.writer.dialect.name == "postgresql"

    @property
    def display_url(self) -> str:
        """The database's URL for logs and messages, without its password."""
        return self.writer.url.render_as_string(hide_password=True)

    def driver_sql(self, sql: str) -> str:
        """`sql` written with `?` markers, in the driver's own style (psycopg's is `%s`), for
        the few statements run on the driver's connection directly."""
        return _driver_sql(sql, self.writer.dialect.paramstyle)

    def begin_raw_write(self, driver: Any) -> None:
        """Begin a write transaction on a driver connection of `writer`'s pool, as every
        transaction of `write()` begins; the caller commits or rolls back."""
        if self.is_postgres:
            postgres.begin_write(driver)
        else:
            driver.execute("BEGIN IMMEDIATE")

    def commit_watch(self, on_commit: Callable[[], None] | None = None) -> CommitWatch:
        """A `CommitWatch` on this database, for a caller that polls it (the API's watch feed,
        the controller's wake-up). On Postgres it is pushed, not polled: `on_commit` is also
        called (from another thread) at each commit heard."""
        if self.is_postgres:
            return postgres.CommitListener(
                self.writer.url.render_as_string(hide_password=False), on_commit
            )
        return _DataVersion(self.writer.url.database or ":memory:")

    def dispose(self) -> None:
        self.writer.dispose()
        self.reader.dispose()


def open_database(url: str) -> Database:
    """Open (and create where missing) the database at `url`, its schema at head.

    Raises `migrations.SchemaError` for a database whose schema taskyard does not know.
    """
    if postgres.is_postgres(url):
        database = Database(
            writer=postgres.postgres_engine(url, writer=True),
            reader=postgres.postgres_engine(url, writer=False),
        )
        return _at_head(database)
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    database = Database(
        writer=_sqlite_engine(url, begin="BEGIN IMMEDIATE"),
        reader=_sqlite_engine(url, begin="BEGIN"),
    )
    return _at_head(database)


def _at_head(database: Database) -> Database:
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
    if writer.dialect.name == "postgresql":
        wait, wait_again = (
            f"SET lock_timeout = {postgres.MIGRATION_LOCK_TIMEOUT_MS}",
            f"SET lock_timeout = {postgres.LOCK_TIMEOUT_MS}",
        )
    else:
        wait, wait_again = (
            f"PRAGMA busy_timeout={MIGRATION_BUSY_TIMEOUT_MS}",
            f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}",
        )
    with writer.connect() as connection:
        driver = connection.connection.driver_connection
        assert driver is not None
        _set(driver, wait)
        try:
            # The writer's own begin (BEGIN IMMEDIATE, or the writer lock): one process
            # migrates at a time. Postgres runs the DDL in that transaction too.
            with connection.begin():
                migrations.migrate(connection)
        finally:
            _set(driver, wait_again)


def _set(driver: Any, statement: str) -> None:
    """Run a session setting on the driver's connection, outside any transaction of ours."""
    driver.execute(statement)
    if not isinstance(driver, sqlite3.Connection):
        driver.commit()  # psycopg began a transaction for it


@cache
def _driver_sql(sql: str, paramstyle: str) -> str:
    return sql if paramstyle == "qmark" else sql.replace("?", "%s")


def schema_revision(database: Database) -> str | None:
    """The schema revision the database is at (None before it has one)."""
    with database.reader.connect() as connection:
        return migrations.current_revision(connection)
