"""The PostgreSQL store (`TASKYARD_DATABASE_URL=postgresql://…`, psycopg 3): its engines, the
writer lock, and the listener that hears every process's commits. `models.database` opens it.

Postgres keeps SQLite's discipline rather than inventing another: every write transaction
first takes one transaction-level advisory lock (`WRITER_LOCK`), as every SQLite write begins
with `BEGIN IMMEDIATE`. So writers run one at a time across all API and controller processes,
readers never wait for them, and a `seq` (transitions, output and input chunks) is taken and
committed inside the lock: seqs become visible in increasing order, and a watcher that read up
to seq N can never later find a commit below N. Every write transaction also sends
`NOTIFY taskyard_commits` (delivered at commit, dropped on rollback): `CommitListener` turns
those into a counter that moves at each commit by anyone, which is what SQLite's
`PRAGMA data_version` is to the SQLite store. See docs/architecture.md, "The store".
"""

import logging
import threading
from collections.abc import Callable
from typing import Any

import psycopg
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

log = logging.getLogger("taskyard.database")

# pg_advisory_xact_lock's key for "a write transaction is running": any fixed bigint, chosen
# once ("taskyard" in ASCII); advisory locks are scoped to one database.
WRITER_LOCK = 0x7461736B79617264
CHANNEL = "taskyard_commits"
# What every write transaction does first: wait for the writer lock, then queue the
# notification that its commit sends.
BEGIN_WRITE = f"SELECT pg_advisory_xact_lock({WRITER_LOCK}); NOTIFY {CHANNEL}"
# A writer that waits longer than this for the lock (or a row) fails with lock_not_available,
# which the API answers as a 503 with Retry-After, as SQLite's busy timeout does.
LOCK_TIMEOUT_MS = 10_000
# How long `open_database` waits while another process migrates.
MIGRATION_LOCK_TIMEOUT_MS = 600_000


def sqlalchemy_url(url: str) -> str:
    """A user's `postgresql://` or `postgres://` URL as SQLAlchemy names psycopg 3."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    return url


def is_postgres(url: str) -> bool:
    return make_url(sqlalchemy_url(url)).get_backend_name() == "postgresql"


def postgres_engine(url: str, *, writer: bool) -> Engine:
    """An engine whose transactions hold the writer lock (`writer`) or read one snapshot.

    Timestamps are stored without a zone, in UTC, as on SQLite: the session's zone is UTC so
    that aware datetimes are stored as their UTC wall time."""
    options = f"-c timezone=UTC -c lock_timeout={LOCK_TIMEOUT_MS}"
    engine = create_engine(
        sqlalchemy_url(url),
        connect_args={"options": options, "application_name": "taskyard"},
        # A writer must see what the writer before it committed, so each of its statements
        # reads the latest commits; a reader sees one snapshot for its whole transaction, as
        # SQLite's readers do.
        isolation_level="READ COMMITTED" if writer else "REPEATABLE READ",
        pool_pre_ping=True,
    )
    if writer:

        @event.listens_for(engine, "begin")
        def _on_begin(connection: Any) -> None:
            connection.exec_driver_sql(BEGIN_WRITE)

    return engine


def begin_write(driver: psycopg.Connection[Any]) -> None:
    """Begin a write transaction on a psycopg connection of the writer engine's pool, as the
    engine's own transactions begin (the submission writer's group commit)."""
    driver.execute(BEGIN_WRITE)


class CommitListener:
    """A counter that moves whenever any process commits a write to the database: a thread
    LISTENs on its own connection and counts notifications. It moves too once the LISTEN is in
    place, and where the connection was lost (what was committed meanwhile went unheard)."""

    def __init__(self, url: str, on_commit: Callable[[], None] | None = None) -> None:
        self._url = make_url(sqlalchemy_url(url)).set(drivername="postgresql")
        self._on_commit = on_commit
        self._version = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="taskyard-listen", daemon=True)
        self._thread.start()

    def version(self) -> int:
        return self._version

    def close(self) -> None:
        """Stop listening: the thread closes its connection within half a second."""
        self._stop.set()

    def _run(self) -> None:
        dsn = self._url.render_as_string(hide_password=False)
        while not self._stop.is_set():
            try:
                with psycopg.connect(dsn, autocommit=True, application_name="taskyard") as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    # From here every commit is heard; what came before, a caller that sees
                    # the counter move reads now.
                    self._moved()
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=0.5):
                            self._moved()
            except psycopg.Error as exc:
                if self._stop.is_set():
                    return
                log.warning("listening for commits: %s; connecting again in 1 s", exc)
                self._moved()
                self._stop.wait(1)

    def _moved(self) -> None:
        self._version += 1
        if self._on_commit is not None:
            self._on_commit()
