"""Group commit for new tasks: one writer thread inserts whatever submissions are waiting in
one transaction, and answers each once that transaction is durable.

Sixteen request threads that each begin their own write transaction spend their time in
SQLite's busy handler (it sleeps up to 100 ms at a time), or on Postgres in the queue for the
writer lock; one writer that commits a group pays one fsync for all of it. No 201 is sent
before its row is committed.

A submission is the new row's column values (`task_values`), not an ORM object: the writer
stores a whole group with one multi-row INSERT per table (tasks, then their first transitions),
and the route answers from the same values, so no request builds or validates a `Task`. One
statement per table rather than one step per row also means fewer times this thread lets go of
the GIL (the sqlite3 driver does around every step) and has to win it back from a busy event
loop, and on Postgres fewer round trips to the server. The values are converted exactly as
SQLAlchemy converts them (the columns' own bind processors), so the rows are the rows the ORM
would store.

A submission is one task (POST /tasks) or a batch of them (POST /batches, `insert_many`): a
batch is one unit inside the transaction, stored whole or not at all, and refused whole where
its user's quota cannot take all of it.

The per-user quota is checked here, inside the transaction that stores the task, so it counts
every task committed before and every task of the same group commit. That transaction holds
the store's write lock (SQLite's, or on Postgres the writer lock of `models.postgres`), so two
API processes cannot both take a user's last place.
"""

import asyncio
import contextlib
import queue
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException
from sqlalchemy import Dialect, Table

from api.admission import active_cpus, batch_quota_problem, quota_problem
from models.database import Database
from models.phases import Phase, Reason
from models.settings import Settings
from models.tables import Task, Transition

# A group commit takes in more hand-overs while it holds fewer rows than this.
MAX_BATCH = 256

TASKS: Table = Task.__table__  # type: ignore[attr-defined]
TRANSITIONS: Table = Transition.__table__  # type: ignore[attr-defined]
# The fewest host parameters any SQLite build allows in one statement (SQLite before 3.32), and
# PostgreSQL's limit (its protocol counts them in 16 bits).
MAX_PARAMETERS = {"sqlite": 999, "postgresql": 65_535}

# The Task columns a new row takes from the model's defaults: plain values, and the
# factories (the creation time, fresh lists) that are called for each row.
_COLUMNS = {name: field for name, field in Task.model_fields.items() if name != "pk"}
_DEFAULTS: dict[str, Any] = {
    name: field.default
    for name, field in _COLUMNS.items()
    if not field.is_required() and field.default_factory is None
}
_FACTORIES: dict[str, Callable[[], Any]] = {
    name: field.default_factory  # type: ignore[misc]
    for name, field in _COLUMNS.items()
    if field.default_factory is not None
}


def task_values(**spec: Any) -> dict[str, Any]:
    """Every column of a new Task row but `pk`: a fresh id, the model's defaults (phase
    Pending, resource_version 1, ...), and `spec`, the columns the request decides."""
    values = {"id": uuid.uuid4().hex, **_DEFAULTS, **spec}
    for name, factory in _FACTORIES.items():
        if name not in spec:
            values[name] = factory()
    return values


def _first_transition(task: dict[str, Any]) -> dict[str, Any]:
    return {
        "task_id": task["id"],
        "from_phase": None,
        "to_phase": Phase.PENDING,
        "reason": Reason.CREATED,
        "message": "task submitted",
        "at": task["created_at"],
        "resource_version": task["resource_version"],
    }


class _MultiRowInsert:
    """`INSERT INTO table (...) VALUES (...), (...), ...` of whole rows, in as few statements
    as the database's parameter limit allows, each value converted by its column's bind
    processor (as SQLAlchemy would; a None it would leave as None is not passed through it)."""

    def __init__(self, table: Table, dialect: Dialect) -> None:
        quote = dialect.identifier_preparer.quote
        columns = [column for column in table.columns if not column.primary_key]
        self._names = [column.name for column in columns]
        self._processors: list[Callable[[Any], Any] | None] = []
        self._keeps_none: list[bool] = []
        for column in columns:
            processor = column.type.dialect_impl(dialect).bind_processor(dialect)
            self._processors.append(processor)
            self._keeps_none.append(processor is None or processor(None) is None)
        self._head = (
            f"INSERT INTO {quote(table.name)} "
            f"({', '.join(quote(name) for name in self._names)}) VALUES "
        )
        marker = "?" if dialect.paramstyle == "qmark" else "%s"
        self._one = "(" + ", ".join([marker] * len(columns)) + ")"
        self.rows_per_statement = MAX_PARAMETERS[dialect.name] // len(columns)
        self._sql: dict[int, str] = {}

    def __call__(self, driver: Any, rows: list[dict[str, Any]]) -> None:
        """Insert `rows` on the driver's connection (sqlite3 or psycopg)."""
        step = self.rows_per_statement
        converters = list(zip(self._names, self._processors, self._keeps_none, strict=True))
        for start in range(0, len(rows), step):
            chunk = rows[start : start + step]
            parameters = []
            for row in chunk:
                for name, processor, keeps_none in converters:
                    value = row[name]
                    if processor is not None and (value is not None or not keeps_none):
                        value = processor(value)
                    parameters.append(value)
            driver.execute(self._statement(len(chunk)), parameters)

    def _statement(self, count: int) -> str:
        sql = self._sql.get(count)
        if sql is None:
            sql = self._sql[count] = self._head + ", ".join([self._one] * count)
        return sql


@dataclass
class _Submission:
    rows: list[dict[str, Any]]  # one task's, or a batch's, stored together or not at all
    future: asyncio.Future[None]
    loop: asyncio.AbstractEventLoop
    error: BaseException | None = None


def _settle(outcomes: list[tuple[asyncio.Future[None], BaseException | None]]) -> None:
    for future, error in outcomes:
        if future.done():
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)


class SubmissionWriter:
    def __init__(self, database: Database, settings: Settings) -> None:
        self._db = database
        self._settings = settings
        # Submissions reach the thread a loop turn's worth at a time: one hand-over (and one
        # wake-up of the thread) for all the requests that one turn of an event loop served.
        self._queue: queue.Queue[list[_Submission] | None] = queue.Queue()
        self._gathering: dict[asyncio.AbstractEventLoop, list[_Submission]] = {}
        dialect = database.writer.dialect
        self._insert_tasks = _MultiRowInsert(TASKS, dialect)
        self._insert_transitions = _MultiRowInsert(TRANSITIONS, dialect)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    async def insert(self, values: dict[str, Any]) -> None:
        """Store the task with these column values (`task_values`) and its first transition;
        return once they are committed. Raises the 429 where `values["owner"]`, a user, has
        no quota left for it, and the storage error where the group could not be stored."""
        await self.insert_many([values])

    async def insert_many(self, rows: list[dict[str, Any]]) -> None:
        """Store these tasks (one owner's) and their first transitions in one commit, all or
        none: the 429 where the owner's quota cannot take every one of them, the storage
        error where they could not be stored."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        gathered = self._gathering.get(loop)
        if gathered is None:
            gathered = self._gathering[loop] = []
            loop.call_soon(self._hand_over, loop)
        gathered.append(_Submission(rows, future, loop))
        await future

    def _hand_over(self, loop: asyncio.AbstractEventLoop) -> None:
        gathered = self._gathering.pop(loop)
        self._ensure_started()
        self._queue.put(gathered)

    def close(self) -> None:
        """Stop the writer after what is queued; a later insert starts a new one (the app's
        lifespan may run again, as it does under test clients)."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(10)

    def _ensure_started(self) -> None:
        if self._thread is not None:  # the common case, without taking the lock
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, daemon=True, name="taskyard-submissions"
                )
                self._thread.start()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            group = first
            rows = sum(len(submission.rows) for submission in group)
            with contextlib.suppress(queue.Empty):
                while rows < MAX_BATCH:
                    more = self._queue.get_nowait()
                    if more is None:
                        self._queue.put(None)  # stop after this group
                        break
                    group.extend(more)
                    rows += sum(len(submission.rows) for submission in more)
            try:
                self._write(group)
            except Exception as exc:  # every waiter hears it: none was stored
                for submission in group:
                    submission.error = submission.error or exc
            # One wake-up per event loop, not one per request.
            by_loop: dict[
                asyncio.AbstractEventLoop, list[tuple[asyncio.Future[None], BaseException | None]]
            ] = {}
            for submission in group:
                by_loop.setdefault(submission.loop, []).append(
                    (submission.future, submission.error)
                )
            for loop, outcomes in by_loop.items():
                with contextlib.suppress(RuntimeError):  # that loop is closed: no one waits
                    loop.call_soon_threadsafe(_settle, outcomes)

    def _write(self, group: list[_Submission]) -> None:
        # On the driver's own connection, taken from the writer engine's pool (so with its
        # settings): a group commit begins as every write of the engine begins (BEGIN
        # IMMEDIATE, or Postgres' writer lock), then two INSERTs and COMMIT, with nothing of
        # SQLAlchemy's between them.
        rows: list[dict[str, Any]] = []
        connection = self._db.writer.raw_connection()
        try:
            driver = connection.driver_connection
            assert driver is not None
            try:
                self._db.begin_raw_write(driver)
                self._check_quotas(driver, group)
                rows = [
                    row
                    for submission in group
                    if submission.error is None
                    for row in submission.rows
                ]
                if rows:
                    self._insert_tasks(driver, rows)
                    self._insert_transitions(driver, [_first_transition(row) for row in rows])
                driver.commit()
            except BaseException:
                with contextlib.suppress(Exception):  # a lost connection cannot roll back
                    driver.rollback()
                raise
        finally:
            connection.close()
        if rows:
            self._db.committed()

    def _check_quotas(self, driver: Any, group: list[_Submission]) -> None:
        """Refuse, with a 429 of their own, the submissions beyond their user's quota,
        counting the unfinished tasks stored and those accepted before them in this group.
        A submission of many tasks is taken or refused whole."""
        if not (self._settings.user_max_active_tasks or self._settings.user_max_cpus):
            return
        active: dict[str, list[int]] = {}
        for submission in group:
            user = submission.rows[0]["owner"]
            if user is None:
                continue
            if user not in active:
                active[user] = active_cpus(self._db, driver, user)
            cpus = [row["cpu"] for row in submission.rows]
            problem: HTTPException | None = (
                quota_problem(active[user], self._settings, cpus[0])
                if len(cpus) == 1
                else batch_quota_problem(active[user], self._settings, cpus)
            )
            if problem is None:
                active[user].extend(cpus)
            else:
                submission.error = problem
