"""`taskyard doctor`: part by part, can this host run tasks, and how to fix what is missing."""

import os
import shutil
from collections.abc import Callable

import docker
import docker.errors

from controller.docker_runtime import DockerRuntime
from controller.gpus import discover_gpus
from models.database import open_database, schema_revision
from models.migrations import SchemaError
from models.runtimes import RUNTIMES, VERSION_LABEL
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

    try:
        database = open_database(settings.resolved_database_url)
        with database.write() as session:
            session.connection()
            session.commit()
        revision = schema_revision(database)
        database.dispose()
        line(
            True,
            "database",
            f"{settings.resolved_database_url} is writable, schema at revision {revision}",
        )
    except SchemaError as exc:
        line(
            False,
            "database",
            str(exc),
            "run the taskyard that last used it, or set TASKYARD_DATABASE_URL to a new file",
        )
    except Exception as exc:  # report any failure as a finding
        line(False, "database", str(exc), f"make {settings.data_dir} writable")

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

    for finding in runtime_findings(settings.image):
        say(finding)

    gpus, message = discover_gpus()
    say(f"[ok] gpus: {message}" + "".join(f"\n       {g.index}: {g.name}" for g in gpus))
    say(f"[ok] cpus: {len(os.sched_getaffinity(0))} usable, {settings.reserved_cpus} reserved")
    return ok


def runtime_findings(default_image: str) -> list[str]:
    """Which runtimes' images are installed, at which version, and how to build the others.
    A missing runtime is no failure: the host runs the others, and asks for it get a 422."""
    try:
        engine = docker.from_env(timeout=10)
        images = {runtime: _labels(engine, runtime.image(default_image)) for runtime in RUNTIMES}
    except docker.errors.DockerException:
        return []  # the engine's own line says why
    installed = [
        f"{runtime.name} ({labels.get(VERSION_LABEL, 'version unknown: rebuild with --force')})"
        for runtime, labels in images.items()
        if labels is not None
    ]
    missing = [runtime.name for runtime, labels in images.items() if labels is None]
    lines = [f"[ok] runtimes: {', '.join(installed) or 'none'}"]
    if missing:
        lines.append(f"[warn] runtimes not installed: {', '.join(missing)}")
        lines.append("       fix: taskyard image build --runtime NAME (or --all)")
    return lines


def _labels(engine: docker.DockerClient, image: str) -> dict[str, str] | None:
    try:
        return dict(engine.images.get(image).labels or {})
    except docker.errors.ImageNotFound:
        return None
