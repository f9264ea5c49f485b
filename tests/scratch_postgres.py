"""A throwaway PostgreSQL server for the tests and the benchmark (deploy/bench.py).

Debian's `postgresql` package (`deploy/setup-host.sh --test` installs it): `initdb` makes a
cluster in a new temporary directory and `pg_ctl` starts it there, listening only on a unix
socket in that directory. PostgreSQL refuses to run as root, so under root the cluster belongs
to, and runs as, the unprivileged `taskyard-pg` user that setup-host.sh creates. `stop()` stops
the server and removes the directory.
"""

import contextlib
import os
import pwd
import queue
import shutil
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg

PG_BIN = Path(os.environ.get("TASKYARD_PG_BIN", "/usr/lib/postgresql/15/bin"))
SYSTEM_USER = "taskyard-pg"
SUPERUSER = "taskyard"
PORT = 5432  # only names the socket file: the server listens on no TCP port

# Settings for a server that tests throw away: no fsync (a crash loses nothing we keep).
FAST = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


class PostgresMissing(RuntimeError):
    """This host cannot start a scratch PostgreSQL; the message says how to fix that."""


class ScratchPostgres:
    """One PostgreSQL server in a temporary directory. `durable=True` keeps the server's
    default fsync and synchronous commit (the benchmark compares it with SQLite's
    `synchronous=FULL`); tests run without them."""

    def __init__(self, *, durable: bool = False) -> None:
        self._durable = durable
        self.root: Path | None = None

    def start(self) -> None:
        for tool in ("initdb", "pg_ctl"):
            if not (PG_BIN / tool).is_file():
                raise PostgresMissing(
                    f"{PG_BIN / tool} is missing: install Debian's postgresql package "
                    "(sudo deploy/setup-host.sh --test does)"
                )
        run_as: list[str] = []
        owner: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam(SYSTEM_USER)
            except KeyError:
                raise PostgresMissing(
                    f"no user {SYSTEM_USER} to run PostgreSQL as (it refuses root): "
                    "sudo deploy/setup-host.sh --test creates it"
                ) from None
            run_as = ["runuser", "-u", SYSTEM_USER, "--"]
        # In /tmp rather than pytest's tmp_path: the server's user must reach it, and pytest's
        # directories are root's alone.
        self.root = Path(tempfile.mkdtemp(prefix="taskyard-pg-"))
        if owner is not None:
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
        data = self.root / "data"
        settings = {
            "listen_addresses": "''",
            "unix_socket_directories": f"'{self.root}'",
            "port": str(PORT),
            "max_connections": "300",
            **({} if self._durable else FAST),
        }
        commands = [
            [
                str(PG_BIN / "initdb"),
                "-D",
                str(data),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
            ],
            [str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(self.root / "log"), "-w", "start"],
        ]
        for number, command in enumerate(commands):
            if number == 1:
                with (data / "postgresql.conf").open("a") as conf:
                    conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
            done = subprocess.run(
                run_as + command, capture_output=True, text=True, timeout=120, check=False
            )
            if done.returncode != 0:
                log = self.root / "log"
                tail = log.read_text()[-2000:] if log.exists() else ""
                self.stop()
                raise PostgresMissing(
                    f"{' '.join(command)} failed ({done.returncode}): "
                    f"{done.stdout}{done.stderr}{tail}"
                )

    def url(self, database: str = "postgres") -> str:
        assert self.root is not None, "start() it first"
        return f"postgresql://{SUPERUSER}@/{database}?host={self.root}&port={PORT}"

    def admin(self) -> psycopg.Connection[tuple[object, ...]]:
        """A connection to the `postgres` database that runs each statement at once (CREATE
        DATABASE cannot run inside a transaction)."""
        assert self.root is not None, "start() it first"
        return psycopg.connect(
            host=str(self.root), port=PORT, user=SUPERUSER, dbname="postgres", autocommit=True
        )

    def create_database(self, template: str | None = None) -> str:
        """A new database (a copy of `template`, where given); its name. A copy is made file
        by file (STRATEGY FILE_COPY): for a small template, six times faster than through
        the WAL, PostgreSQL 15's default."""
        name = f"t_{uuid.uuid4().hex[:16]}"
        copy = f" TEMPLATE {template} STRATEGY FILE_COPY" if template else ""
        with self.admin() as admin:
            admin.execute(f"CREATE DATABASE {name}{copy}")
        return name

    def drop_database(self, name: str) -> None:
        with self.admin() as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def stop(self) -> None:
        if self.root is None:
            return
        data = self.root / "data"
        if (data / "postmaster.pid").exists():
            run_as = ["runuser", "-u", SYSTEM_USER, "--"] if os.geteuid() == 0 else []
            subprocess.run(
                [*run_as, str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                capture_output=True,
                timeout=60,
                check=False,
            )
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None


class Postgres:
    """A started server, and a template database with the migrations applied that test
    databases are copied from (tests/conftest.py's `postgres` fixture). Used databases are
    dropped by a thread of their own (a drop takes about half a second), one at a time."""

    def __init__(self, server: ScratchPostgres, template: str) -> None:
        self.server = server
        self.template = template
        self._used: queue.Queue[str | None] = queue.Queue()
        self._dropper = threading.Thread(target=self._drop_used, daemon=True)
        self._dropper.start()

    def fresh_url(self) -> tuple[str, str]:
        """A new database, a copy of the template: its name and URL."""
        name = self.server.create_database(template=self.template)
        return name, self.server.url(name)

    def discard(self, name: str) -> None:
        """Drop this database soon (its connections are cut)."""
        self._used.put(name)

    def stop(self) -> None:
        """Stop dropping, then the server (which removes what is left)."""
        self._used.put(None)
        self._dropper.join(30)
        self.server.stop()

    def _drop_used(self) -> None:
        while (name := self._used.get()) is not None:
            with contextlib.suppress(psycopg.Error):
                self.server.drop_database(name)


@contextlib.contextmanager
def scratch_postgres(*, durable: bool = False) -> Iterator[ScratchPostgres]:
    server = ScratchPostgres(durable=durable)
    server.start()
    try:
        yield server
    finally:
        server.stop()
