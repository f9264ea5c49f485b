"""`taskyard doctor`: part by part (database, engine and images, runtimes, the service, GPUs,
CPUs), can this host run tasks, does the service answer, and how to fix what is missing. It
only looks: it creates no data dir, database or file, and migrates nothing (the service does
that when it starts).

Each finding is one line, `[ok]`, `[warn]` or `[FAIL]`, and a failure's fix on the next; the
exit code is 1 when something FAILs. A service that does not answer is a warning: the host
may still be able to run tasks.
"""

import contextlib
import logging
import os
import shutil
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.engine import make_url

from controller.docker_runtime import DockerRuntime
from controller.gpus import discover_gpus
from controller.runtime import RuntimeHealth
from models import migrations
from models.migrations import SchemaError
from models.postgres import sqlalchemy_url
from models.runtimes import RUNTIMES
from models.settings import Settings
from taskyard.commands.context import server_address

DOCKER_HOST_ENV = "DOCKER_HOST"
SERVER_TIMEOUT_SECONDS = 3.0


@dataclass(frozen=True)
class Finding:
    level: str  # "ok", "warn" or "FAIL"
    part: str
    detail: str
    fix: str = ""


def diagnose(
    settings: Settings, say: Callable[[str], None] = print, *, server: str | None = None
) -> bool:
    # health() reads the engine and the images only; no container is touched, so no owner.
    health = DockerRuntime("doctor", settings.image).health()
    findings = [_database(settings), *_engine(settings, health)]
    for finding in findings:
        _tell(say, finding)
    if health.ok:
        for line in runtime_findings(health.runtimes):
            say(line)
    rest = [
        _server(server, settings.data_dir),
        _gpus(),
        Finding(
            "ok",
            "cpus",
            f"{len(os.sched_getaffinity(0))} usable, {settings.reserved_cpus} reserved",
        ),
    ]
    for finding in rest:
        _tell(say, finding)
    return all(finding.level != "FAIL" for finding in findings + rest)


def _tell(say: Callable[[str], None], finding: Finding) -> None:
    say(f"[{finding.level}] {finding.part}: {finding.detail}")
    if finding.fix and finding.level != "ok":
        say(f"       fix: {finding.fix}")


def _database(settings: Settings) -> Finding:
    url = settings.resolved_database_url
    if not url.startswith("sqlite:///"):
        shown = make_url(sqlalchemy_url(url)).render_as_string(hide_password=True)
        return Finding("warn", "database", f"{shown} is not a SQLite file; not checked")
    path = Path(url.removeprefix("sqlite:///")).absolute()
    if not path.exists():
        place = next(parent for parent in path.parents if parent.exists())
        if not os.access(place, os.W_OK | os.X_OK):
            return Finding(
                "FAIL",
                "database",
                f"{path} does not exist yet, and {place} is not writable to create it",
                f"make {place} writable, or name another --data-dir",
            )
        return Finding(
            "ok", "database", f"{path} does not exist yet; the service creates it at its start"
        )
    # SQLite writes its -wal and -shm files beside the database.
    for needed in (path, path.parent):
        if not os.access(needed, os.W_OK):
            return Finding(
                "FAIL", "database", f"{needed} is not writable", f"make {needed} writable"
            )
    try:
        revision = _stored_revision(path)
        head = migrations.head_revision()
        if revision is not None and revision != head:
            migrations.check_known(revision)
    except SchemaError as exc:
        return Finding(
            "FAIL",
            "database",
            str(exc),
            "run the taskyard that last used it, or set TASKYARD_DATABASE_URL to a new file",
        )
    except sqlite3.Error as exc:
        return Finding("FAIL", "database", f"cannot read {path}: {exc}", "restore it from a copy")
    if revision == head:
        return Finding("ok", "database", f"{path} is writable, schema at revision {revision}")
    return Finding(
        "ok",
        "database",
        f"{path} is writable, schema at revision {revision or 'none'}; "
        f"the service brings it to {head} at its start",
    )


def _stored_revision(path: Path) -> str | None:
    """The schema revision stamped in the database, read without writing anything. Without a
    write-ahead log (no service has it open) the file alone is the whole database, and an
    `immutable` read takes no lock and creates no -shm or -wal file; with one, a read-only
    connection reads through it."""
    mode = "mode=ro" if Path(f"{path}-wal").exists() else "immutable=1"
    with contextlib.closing(sqlite3.connect(f"{path.as_uri()}?{mode}", uri=True)) as connection:
        stamped = connection.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'"
        ).fetchone()
        if stamped is None:
            return None
        row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
        return None if row is None else str(row[0])


def _engine(settings: Settings, health: RuntimeHealth) -> list[Finding]:
    if health.ok:
        return [Finding("ok", "engine", health.message)]
    if "image" in health.message:
        return [
            Finding("ok", "engine", "Docker engine reachable"),
            Finding("FAIL", "runner image", f"{settings.image} is missing", "taskyard image build"),
        ]
    docker_host = os.environ.get(DOCKER_HOST_ENV)
    if docker_host:
        return [
            Finding(
                "FAIL",
                "engine",
                f"{DOCKER_HOST_ENV}={docker_host}: {health.message}",
                f"point {DOCKER_HOST_ENV} at a running engine, or unset it to use the local "
                "one (unix:///var/run/docker.sock)",
            )
        ]
    fix = (
        "start it: dockerd &"
        if shutil.which("dockerd")
        else "install and start it: apt-get install -y docker.io && dockerd &"
    )
    return [Finding("FAIL", "engine", health.message, fix)]


def _server(flag: str | None, data_dir: Path) -> Finding:
    server = server_address(flag, str(data_dir))
    where = f"{server.url} ({server.source})"
    hint = (
        "start it: taskyard serve; or name the one that runs with --server URL or "
        "TASKYARD_SERVER=URL"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per request in a report
    try:
        response = httpx.get(f"{server.url}/healthz", timeout=SERVER_TIMEOUT_SECONDS)
        health = response.json()
        status = health["status"]
    except httpx.HTTPError as exc:
        return Finding("warn", "server", f"nothing answers at {where}: {exc}", hint)
    except (ValueError, KeyError, TypeError):
        return Finding(
            "warn",
            "server",
            f"{where} answers HTTP {response.status_code}, but not as taskyard does",
            hint,
        )
    if status == "ok":
        return Finding("ok", "server", f"{where} answers: ok")
    failing = [
        f"{name}: {check.get('message', 'not ok')}"
        for name, check in (health.get("checks") or {}).items()
        if isinstance(check, dict) and not check.get("ok", True)
    ]
    return Finding(
        "warn", "server", f"{where} answers: {status} ({'; '.join(failing) or 'no detail'})"
    )


def _gpus() -> Finding:
    gpus, message = discover_gpus()
    return Finding("ok", "gpus", message + "".join(f"\n       {g.index}: {g.name}" for g in gpus))


def runtime_findings(installed: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Which runtimes' images are installed (as the engine's health read them), at which
    version, and how to build the others. A missing runtime is no failure: the host runs the
    others, and asks for it get a 422."""
    unknown = "version unknown: rebuild with --force"
    found = [
        f"{runtime.name} ({installed[runtime.name].get('version') or unknown})"
        for runtime in RUNTIMES
        if runtime.name in installed
    ]
    missing = [runtime.name for runtime in RUNTIMES if runtime.name not in installed]
    lines = [f"[ok] runtimes: {', '.join(found) or 'none'}"]
    if missing:
        lines.append(f"[warn] runtimes not installed: {', '.join(missing)}")
        lines.append("       fix: taskyard image build --runtime NAME (or --all)")
    return lines
