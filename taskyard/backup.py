"""`taskyard admin backup DEST`: a consistent copy of the service's SQLite database, taken while
the service runs. `taskyard.cli` calls `run_backup`.

It reads the database file itself, not the API: run it on the service's host, as a user who
can read the data dir (root, or the service's user). SQLite's online backup API copies the
database inside one read transaction of a read-only connection; in WAL mode that reader never
blocks the service's writers, and the copy is the database as of one commit. The copy is
written next to DEST, checked (`PRAGMA quick_check`), switched to a rollback journal so that it
is one self-contained file, and only then renamed to DEST: a failed backup leaves no file
behind, and an existing file is replaced only with `force`. The copy holds the tasks' code and
output and the tokens' hashes, so it is created with mode 0600.
"""

import os
import sqlite3
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from sqlalchemy.engine import make_url

from models.postgres import is_postgres, sqlalchemy_url
from models.settings import Settings
from models.tables import Task
from taskyard.commands.output import format_bytes

SQLITE_PREFIX = "sqlite:///"


class BackupError(Exception):
    """A backup that cannot be taken; the message says why and what to do."""


@dataclass(frozen=True)
class Backup:
    source: Path
    path: Path
    size: int
    tasks: int


def database_file(settings: Settings) -> Path:
    """The service's SQLite file, from `TASKYARD_DATABASE_URL` or the data dir."""
    url = settings.resolved_database_url
    if is_postgres(url):
        shown = make_url(sqlalchemy_url(url)).render_as_string(hide_password=True)
        raise BackupError(
            f"the database {shown} is PostgreSQL: back it up with pg_dump "
            "(pg_dump --format=custom --file=DEST DBNAME), which takes a consistent copy "
            "while the service runs; taskyard admin backup copies SQLite files only"
        )
    if not url.startswith(SQLITE_PREFIX) or url.endswith(":memory:"):
        raise BackupError(f"the database {url} is not a SQLite file; back it up with its own tools")
    return Path(url.removeprefix(SQLITE_PREFIX).split("?", 1)[0])


def target(dest: Path, now: datetime) -> Path:
    """DEST itself, or a dated file name inside DEST where it is a directory."""
    if dest.is_dir():
        return dest / f"taskyard-{now.strftime('%Y%m%dT%H%M%SZ')}.db"
    return dest


def back_up(source: Path, dest: Path, *, force: bool = False) -> Backup:
    """Copy the database at `source` to `dest` as of one commit; see the module docstring."""
    if not source.is_file():
        raise BackupError(
            f"no database at {source}: is --data-dir (or TASKYARD_DATA_DIR) the service's?"
        )
    path = target(dest, datetime.now(UTC))
    if not path.parent.is_dir():
        raise BackupError(f"{path.parent} is not a directory")
    if path.exists():
        if path.resolve() == source.resolve():
            raise BackupError(f"{path} is the database itself")
        if not force:
            raise BackupError(f"{path} exists; pass --force to replace it")
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        # An empty file is an empty database: SQLite writes the copy into it, keeping its mode.
        os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        tasks = _copy(source, partial)
        with partial.open("rb") as copied:
            os.fsync(copied.fileno())
        os.replace(partial, path)
        _sync_directory(path.parent)
    except sqlite3.Error as exc:
        raise BackupError(f"cannot copy {source}: {exc}") from exc
    except OSError as exc:
        raise BackupError(f"cannot write {path}: {exc.strerror or exc}") from exc
    finally:
        partial.unlink(missing_ok=True)
    return Backup(source=source, path=path, size=path.stat().st_size, tasks=tasks)


def _copy(source: Path, partial: Path) -> int:
    """Copy `source` into the empty database `partial`, check it; return its task count."""
    reader = sqlite3.connect(f"file:{quote(str(source))}?mode=ro", uri=True, timeout=30)
    try:
        writer = sqlite3.connect(partial)
        try:
            reader.backup(writer)  # every page in one step: one read transaction
            writer.execute("PRAGMA journal_mode=DELETE")
            check = writer.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise BackupError(f"the copy of {source} fails its check: {check}")
            count: int = writer.execute(f'SELECT count(*) FROM "{Task.__tablename__}"').fetchone()[
                0
            ]
            return count
        finally:
            writer.close()
    finally:
        reader.close()


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def run_backup(settings: Settings, dest: str, *, force: bool) -> int:
    """The verb: back up, say where and how big, or say why not (exit 1)."""
    try:
        done = back_up(database_file(settings), Path(dest), force=force)
    except BackupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    size = f"{done.size} bytes"
    if format_bytes(done.size) != f"{done.size}B":
        size = f"{format_bytes(done.size)} ({size})"
    print(f"backed up {done.source} to {done.path}: {size}, {done.tasks} tasks, quick_check ok")
    return 0
