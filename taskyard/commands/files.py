"""What `taskyard submit` adds to a task besides its code (`-f FILE`, `--arg`, `--env`,
`--collect`, `--runtime`), and where `--out DIR` saves the files that came back.

Called by `taskyard.commands.tasks`; reads and writes local files only.
"""

import argparse
import base64
import os
from pathlib import Path
from typing import Any

from taskyard.client import Task
from taskyard.commands.context import UsageError


def add_program_flags(submit: argparse.ArgumentParser) -> None:
    submit.add_argument(
        "--runtime",
        metavar="NAME",
        help="python (default), python-data, node, c, cpp, bash, java, or an alias; "
        "`taskyard runtimes` lists what the server has",
    )
    submit.add_argument(
        "-f",
        "--file",
        dest="files",
        action="append",
        default=[],
        metavar="[NAME=]PATH",
        help="a file written in the task's work directory, under its base name or NAME "
        "(repeatable)",
    )
    submit.add_argument(
        "--arg",
        dest="args_",
        action="append",
        default=[],
        metavar="ARG",
        help="an argument of the program (repeatable, in order)",
    )
    submit.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an environment variable of the program (repeatable)",
    )
    submit.add_argument(
        "--collect",
        action="append",
        default=[],
        metavar="GLOB",
        help="files to send back after the run, e.g. '*.png' (repeatable)",
    )
    submit.add_argument("--out", metavar="DIR", help="with --wait: save the collected files in DIR")


def program_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The body fields of those flags, only where given (a seed-shaped body otherwise)."""
    fields: dict[str, Any] = {}
    if args.runtime:
        fields["runtime"] = args.runtime
    if args.files:
        fields["files"] = [_file(spec) for spec in args.files]
    if args.args_:
        fields["args"] = list(args.args_)
    if args.env:
        fields["env"] = dict(_pair(spec) for spec in args.env)
    if args.collect:
        fields["collect"] = list(args.collect)
    if args.out and not (args.wait or args.watch or args.follow):
        raise UsageError("--out saves the files of a finished task: add --wait")
    return fields


def _file(spec: str) -> dict[str, str]:
    name, equals, path = spec.partition("=")
    if not equals:
        name, path = os.path.basename(spec), spec
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return {"name": name, "content": data.decode("utf-8"), "encoding": "utf8"}
    except UnicodeDecodeError:
        return {"name": name, "content": base64.b64encode(data).decode(), "encoding": "base64"}


def _pair(spec: str) -> tuple[str, str]:
    name, equals, value = spec.partition("=")
    if not equals or not name:
        raise UsageError(f"--env takes NAME=VALUE, not {spec!r}")
    return name, value


def save_files(task: Task, directory: str) -> list[Path]:
    """Write the task's collected files under `directory`, never outside it (a name with
    `..` or an absolute one is refused, whatever the server sent); the paths written."""
    root = Path(directory).resolve()
    written = []
    for file in task["status"].get("files") or []:
        target = (root / file["name"]).resolve()
        if root not in target.parents:
            raise UsageError(f"refusing to write {file['name']!r} outside {root}")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(base64.b64decode(file["content"]))
        written.append(target)
    return written
