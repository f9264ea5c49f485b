"""`taskyard doctor`: part by part, can this host run tasks, and how to fix what is missing."""

import os
import shutil
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy.engine import make_url

from controller.docker_runtime import DockerRuntime
from controller.gpus import discover_gpus
from models.database import open_database, schema_revision
from models.migrations import SchemaError
from models.postgres import is_postgres, sqlalchemy_url
from models.runtimes import RUNTIMES
from models.settings import Settings
from taskyard.service import instance_id


def diagnose(settings: Settings, say: Callable[[str], None] = print) -> bool:
    ok = True

    def line(good: bool, part: str, detail: str, fix: str = "") -> None:
        nonlocal ok
        ok = ok and good
        say(f"[{'ok' if good else 'FAIL'}] {part}: {detail}")
        if not good and fix:
            say(f"       fix: {fix}")

    url = settings.resolved_database_url
    shown = make_url(sqlalchemy_url(url)).render_as_string(hide_password=True)
    try:
        database = open_database(url)
        with database.write() as session:
            session.connection()
            session.commit()
        revision = schema_revision(database)
        database.dispose()
        line(True, "database", f"{shown} is writable, schema at revision {revision}")
    except SchemaError as exc:
        line(
            False,
            "database",
            str(exc),
            "run the taskyard that last used it, or set TASKYARD_DATABASE_URL to a new file",
        )
    except Exception as exc:  # report any failure as a finding
        fix = (
            "check TASKYARD_DATABASE_URL: the server must answer, and its user may create "
            "tables in that database"
            if is_postgres(url)
            else f"make {settings.data_dir} writable"
        )
        line(False, "database", str(exc), fix)

    health = DockerRuntime(instance_id(settings.data_dir), settings.image).health()
    if health.ok:
        line(True, "engine", health.message)
    elif "image" in health.message:
        line(True, "engine", "Docker engine reachable")
        line(False, "runner image", health.message, "taskyard image build")
    else:
        fix = (
            "start it: dockerd &"
            if shutil.which("dockerd")
            else "install and start it: apt-get install -y docker.io && dockerd &"
        )
        line(False, "engine", health.message, fix)

    if health.ok:
        for finding in runtime_findings(health.runtimes):
            say(finding)

    gpus, message = discover_gpus()
    say(f"[ok] gpus: {message}" + "".join(f"\n       {g.index}: {g.name}" for g in gpus))
    say(f"[ok] cpus: {len(os.sched_getaffinity(0))} usable, {settings.reserved_cpus} reserved")
    return ok


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
