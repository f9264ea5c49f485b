"""From a task's runtime and what it brings to what the container is told, and from what
came back to what its status keeps.

Pure: called by the reconcile executor when it builds a task's container spec (`program_of`,
`image_of`) and when it records how the run ended (`kept_files`, `usage_of`).
"""

import base64
from collections.abc import Mapping, Sequence
from typing import Any

from models.runtimes import BY_NAME, DEFAULT_RUNTIME, Runtime
from models.settings import Settings
from sandbox.frames import CollectedFile
from sandbox.supervisor import Program, Report


def runtime_of(name: str | None) -> Runtime | None:
    """The task's runtime by its stored name; None for a name this version does not know
    (a newer API wrote it), which the executor fails rather than run as another."""
    return BY_NAME.get(name or DEFAULT_RUNTIME)


def image_of(runtime: Runtime, settings: Settings) -> str:
    return runtime.image(settings.image)


def program_of(
    runtime: Runtime,
    *,
    files: Sequence[Mapping[str, str]],
    args: Sequence[str],
    env: Mapping[str, str],
    collect: Sequence[str],
    timeout_seconds: int,
    settings: Settings,
) -> Program:
    """What the supervisor runs: the runtime's commands, the task's files (decoded), args and
    env (the runtime's own variables win: the API refuses names it keeps), and what to send
    back. The supervisor ends the code at the task's timeout itself, so that the files and
    usage of a timed-out run still come back; the controller's deadline stays the backstop."""
    return Program(
        main=runtime.main_file,
        run=runtime.run,
        compile=runtime.compile,
        python=runtime.run[:1] == ("python3",),
        files=tuple((file["name"], _decoded(file)) for file in files),
        args=tuple(args),
        env=tuple({**env, **dict(runtime.env)}.items()),
        collect=tuple(collect),
        collect_files=settings.collect_max_files,
        collect_bytes=settings.collect_max_bytes,
        deadline=float(timeout_seconds),
    )


def _decoded(file: Mapping[str, str]) -> bytes:
    if file.get("encoding") == "base64":
        return base64.b64decode(file["content"])
    return file["content"].encode("utf-8")


def kept_files(
    files: Sequence[CollectedFile], truncated: bool, settings: Settings
) -> tuple[list[dict[str, Any]], bool]:
    """The collected files the task's status keeps ({name, size, content in base64}), within
    the settings' bounds whatever came back, and whether some were left out."""
    kept: list[dict[str, Any]] = []
    left = settings.collect_max_bytes
    for file in files:
        if len(kept) == settings.collect_max_files or len(file.content) > left:
            truncated = True
            continue
        left -= len(file.content)
        content = base64.b64encode(file.content).decode("ascii")
        kept.append({"name": file.name, "size": len(file.content), "content": content})
    return kept, truncated


def usage_of(report: Report | None) -> dict[str, Any] | None:
    if report is None or report.usage is None:
        return None
    usage = report.usage
    return {
        "wall_seconds": usage.wall_seconds,
        "cpu_seconds": usage.cpu_seconds,
        "peak_memory_bytes": usage.peak_memory_bytes,
    }
