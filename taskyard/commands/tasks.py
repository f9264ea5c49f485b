"""The task verbs of `taskyard`: `submit` (optionally `--wait`, `--watch` or `--follow`), `get`,
`list`, `watch`, `logs` and `cancel`, added to the parser by `taskyard.cli` with
`add_task_verbs`.
"""

import argparse
import json
from collections.abc import Callable
from typing import Any, TextIO

from models.phases import Phase
from taskyard.client import (
    DEFAULT_RESOURCES,
    TERMINAL_PHASES,
    ApiError,
    HistoryGone,
    LogEnd,
    Task,
)
from taskyard.commands.context import (
    EXIT_INTERRUPTED,
    MIN_PREFIX,
    AmbiguousTask,
    Context,
    UsageError,
    client_verb,
    on_task,
    show,
)
from taskyard.commands.files import add_program_flags, program_fields, save_files
from taskyard.commands.output import (
    Progress,
    arrow,
    task_summary,
    tasks_table,
    to_yaml,
    transition_line,
)

PHASES = [phase.value for phase in Phase]
WAIT_POLL_SECONDS = 1.0  # one GET ?wait= per second: the progress line ticks, terminal is prompt


class _WatchDone(Exception):
    """Ends a single-task watch whose task finished while its history was compacted away."""


def phase_arg(text: str) -> str:
    """A phase in any case, as the API spells it (`running` is `Running`); anything else is
    left for argparse to refuse, listing the phases."""
    phase = Phase.named(text)
    return text if phase is None else phase.value


def _read_source(path: str, stdin: TextIO) -> str:
    try:
        if path == "-":
            return stdin.read()
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None


def submit_body(args: argparse.Namespace, stdin: TextIO) -> dict[str, Any]:
    """The POST /tasks body from the command line; resources go as the contract's strings."""
    if args.code is not None and args.file is not None:
        raise UsageError("give the code once: FILE, -c CODE, or - for stdin")
    if args.code is not None:
        code, source = args.code, "-c"
    elif args.file is not None:
        code = _read_source(args.file, stdin)
        source = "stdin" if args.file == "-" else args.file
    elif not stdin.isatty():
        code, source = _read_source("-", stdin), "stdin"
    else:
        raise UsageError("no code: give FILE, -c CODE, or pipe it on stdin")
    body: dict[str, Any] = {
        "task_type": "execute_code",
        "code": code,
        "resources": {"cpu": args.cpu, "gpu": args.gpu, "ram": args.ram, "storage": args.storage},
    }
    if args.timeout is not None:
        body["timeout_seconds"] = args.timeout
    if args.stdin_file is not None:
        if args.stdin_file == "-" and (
            args.file == "-" or (args.code is None and args.file is None)
        ):
            raise UsageError("stdin cannot carry both the code and the task's input")
        body["stdin"] = _read_source(args.stdin_file, stdin)
    if not code.strip():
        # `submit --wait </dev/null` would run nothing and "succeed".
        raise UsageError(f"no code: the code from {source} is empty")
    return body | program_fields(args)


def _submit(ctx: Context) -> int:
    body = submit_body(ctx.args, ctx.stdin)
    started = ctx.monotonic()
    task = ctx.client.submit(**body)
    task_id = task["id"]
    if not (ctx.args.wait or ctx.args.watch or ctx.args.follow):
        show(ctx, task, default=lambda: f"task/{task_id} created")
        return 0
    ctx.note(f"task/{task_id} created")
    try:
        if ctx.args.follow:
            return _print_logs(ctx, task_id, follow=True, stream=None)
        if ctx.args.watch:
            task = _follow(ctx, task)
        task = wait_terminal(ctx, task, started)
    except KeyboardInterrupt:
        ctx.note(f"\ninterrupted: task/{task_id} keeps going; `taskyard cancel {task_id}` stops it")
        return EXIT_INTERRUPTED
    if ctx.args.out:
        for path in save_files(task, ctx.args.out):
            ctx.note(f"saved {path}")
    return finish(ctx, task)


def wait_terminal(ctx: Context, task: Task, started: float) -> Task:
    """Poll with GET ?wait= until the task is terminal, showing progress on stderr."""
    if task["status"]["phase"] in TERMINAL_PHASES:
        return task
    progress = Progress(ctx.err, task["id"], started=started, clock=ctx.monotonic)
    progress.show(task["status"])
    while task["status"]["phase"] not in TERMINAL_PHASES:
        task = ctx.client.get(task["id"], wait=WAIT_POLL_SECONDS)
        progress.show(task["status"])
    progress.done()
    return task


def _follow(ctx: Context, task: Task) -> Task:
    """`submit --watch`: every transition of the task, from its creation, on stderr."""
    task_id = task["id"]
    try:
        seqs = [event["seq"] for event in ctx.client.events(task_id)]
        since = min(seqs) - 1 if seqs else None  # replay from creation: nothing is missed
    except ApiError:
        since = None
    to = arrow(ctx.err)
    try:
        for event in ctx.client.watch(task_id=task_id, since=since, on_retry=_retry_note(ctx)):
            ctx.note(transition_line(event, to=to))
            if event["to_phase"] in TERMINAL_PHASES:
                break
    except HistoryGone:
        ctx.note("watch: history compacted; waiting for the outcome instead")
    except ApiError as exc:
        if exc.status != 404:
            raise
        ctx.note("watch: this server has no /watch; waiting for the outcome instead")
    return ctx.client.get(task_id)


def finish(ctx: Context, task: Task) -> int:
    """Print a finished task's output like a local run; 0 only when it succeeded."""
    status = task["status"]
    if getattr(ctx.args, "output", None):
        show(ctx, task, default=str)
    else:
        output = status.get("stdout")
        if output is None and status["phase"] == "Succeeded":
            output = status.get("result")
        ctx.out.write(output or "")
        ctx.out.flush()
        errors = status.get("stderr") or ""
        if errors:
            # Our own lines follow on stderr; never glue them to the task's last line.
            ctx.err.write(errors if errors.endswith("\n") else errors + "\n")
    for stream in ("stdout", "stderr"):
        if status.get(f"{stream}_truncated"):
            ctx.note(f"note: the task's {stream} was cut at the service's output limit")
    if status["phase"] == "Succeeded":
        return 0
    ctx.note(
        f"error: task/{task['id']} {status['phase']} ({status['reason']}): {status['message']}"
    )
    result = (status.get("result") or "").strip()
    if result and result not in (status.get("stderr") or "") and result != status["message"]:
        ctx.note(f"  {result}")
    return 1


def _print_logs(ctx: Context, task_id: str, *, follow: bool, stream: str | None) -> int:
    """Copy the task's output to ours as it arrives; 0 once it ended in success."""
    ended: LogEnd | None = None
    for item in ctx.client.log_events(task_id, follow=follow, stream=stream):
        if isinstance(item, LogEnd):
            ended = item
            break
        target = ctx.out if item.get("stream") == "stdout" else ctx.err
        target.write(item.get("text") or "")
        target.flush()
    if ended is None:
        return 0  # not following: what exists so far was printed
    if ended.get("phase") == "Succeeded":
        return 0
    task = ctx.client.get(task_id)
    status = task["status"]
    ctx.note(f"error: task/{task_id} {status['phase']} ({status['reason']}): {status['message']}")
    return 1


def _logs(ctx: Context) -> int:
    args = ctx.args
    try:
        return on_task(
            ctx,
            args.id,
            lambda task_id: _print_logs(ctx, task_id, follow=args.follow, stream=args.stream),
        )
    except KeyboardInterrupt:
        return 0


def _retry_note(ctx: Context) -> Callable[[str, int, float], None]:
    def note(why: str, attempt: int, delay: float) -> None:
        ctx.note(f"watch: connection lost ({why}); reconnecting in {delay:.1f}s (try {attempt})")

    return note


def _get(ctx: Context) -> int:
    task = on_task(ctx, ctx.args.id, ctx.client.get)
    show(ctx, task, default=lambda: task_summary(task, ctx.now()))
    return 0


def _list(ctx: Context) -> int:
    args = ctx.args
    page = ctx.client.list_page(phase=args.phase, limit=args.limit)
    items, cursor = list(page.items), page.next_cursor
    while args.all and cursor:
        page = ctx.client.list_page(phase=args.phase, limit=args.limit, cursor=cursor)
        items.extend(page.items)
        cursor = page.next_cursor
    if args.output == "json":
        ctx.print(json.dumps({"items": items, "next_cursor": cursor}, indent=2))
    elif args.output == "yaml":
        ctx.print(to_yaml({"items": items, "next_cursor": cursor}))
    elif args.output == "name":
        for task in items:
            ctx.print(f"task/{task['id']}")
    elif not items:
        ctx.note("No tasks found.")
    else:
        ctx.print(tasks_table(items, ctx.now(), wide=args.output == "wide"))
        if cursor:
            ctx.note(f"(the newest {len(items)} shown; `taskyard list --all` shows every one)")
    return 0


def _watch(ctx: Context) -> int:
    if ctx.args.task is None:
        return _watch_task(ctx, None)
    return on_task(ctx, ctx.args.task, lambda task_id: _watch_task(ctx, task_id))


def _watch_task(ctx: Context, task_id: str | None) -> int:
    args = ctx.args
    to = arrow(ctx.out)

    def gone(exc: HistoryGone) -> int | None:
        ctx.note(
            f"watch: {exc}; transitions in between are not shown; restarting from the current state"
        )
        if not task_id:
            return None  # a watch on all tasks starts from the newest transition
        task = ctx.client.get(task_id)
        ctx.note(f"task/{task_id} is now {task['status']['phase']}")
        if task["status"]["phase"] in TERMINAL_PHASES:
            raise _WatchDone
        # Without `since` a one-task watch starts at the task's beginning, which is gone;
        # resume after the newest of its transitions that is still kept.
        seqs = [event["seq"] for event in ctx.client.events(task_id)]
        return max(seqs) if seqs else None

    try:
        for event in ctx.client.watch(
            task_id=task_id,
            phase=args.phase,
            since=args.since,
            on_retry=_retry_note(ctx),
            on_gone=gone,
        ):
            ctx.print(json.dumps(event) if args.output == "json" else transition_line(event, to=to))
    except _WatchDone:
        pass
    return 0


def _cancel(ctx: Context) -> int:
    failed = 0
    for given in ctx.args.ids:
        try:
            task = on_task(ctx, given, ctx.client.cancel)
        except (ApiError, AmbiguousTask) as exc:
            ctx.note(f"error: {exc}")
            failed += 1
            continue
        ctx.print(f"task/{task['id']} cancellation requested")
    return 1 if failed else 0


def _output_flag(parser: argparse.ArgumentParser, *choices: str) -> None:
    parser.add_argument("-o", "--output", choices=choices, help="output format")


_ID_HELP = (
    f"the task's id, task/<id>, or a unique prefix of its id ({MIN_PREFIX} characters or more)"
)


def add_task_verbs(verbs: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add `submit`, `get`, `list`, `watch`, `logs` and `cancel` to the `taskyard` parser."""
    submit = client_verb(verbs, "submit", _submit, "submit a code snippet as a task")
    submit.add_argument(
        "file",
        nargs="?",
        metavar="FILE",
        help="Python file to run; `-` (or nothing, with a pipe) reads stdin",
    )
    submit.add_argument("-c", "--code", help="the code itself, as python -c takes it")
    cpu, gpu, ram, storage = (DEFAULT_RESOURCES[name] for name in ("cpu", "gpu", "ram", "storage"))
    submit.add_argument("--cpu", default=cpu, help=f"CPU cores (default {cpu}; 0: best effort)")
    submit.add_argument("--gpu", default=gpu, help=f"whole GPUs (default {gpu})")
    submit.add_argument("--ram", default=ram, help=f"memory limit (default {ram})")
    submit.add_argument("--storage", default=storage, help=f"writable space (default {storage})")
    submit.add_argument("--timeout", type=int, metavar="S", help="seconds (server default 30)")
    submit.add_argument("--stdin-file", metavar="F", help="file given to the task as stdin")
    submit.add_argument(
        "--wait",
        action="store_true",
        help="wait for the outcome, print the task's output, exit 0 on success",
    )
    submit.add_argument(
        "--watch",
        action="store_true",
        help="as --wait, and print every transition on stderr as it happens",
    )
    submit.add_argument(
        "--follow",
        action="store_true",
        help="print the task's output live as it is produced, then its outcome",
    )
    add_program_flags(submit)
    _output_flag(submit, "json", "yaml", "wide", "name")

    get = client_verb(verbs, "get", _get, "show one task")
    get.add_argument("id", metavar="ID", help=_ID_HELP)
    _output_flag(get, "json", "yaml", "wide", "name")

    listing = client_verb(verbs, "list", _list, "list tasks, newest first")
    listing.add_argument(
        "--phase", type=phase_arg, choices=PHASES, help="only tasks in this phase (any case)"
    )
    listing.add_argument(
        "--limit",
        type=int,
        default=50,
        metavar="N",
        help="tasks per page (default 50, at most 500)",
    )
    listing.add_argument("--all", action="store_true", help="follow every page")
    _output_flag(listing, "json", "yaml", "wide", "name")

    watch = client_verb(verbs, "watch", _watch, "print task transitions live, one line each")
    watch.add_argument(
        "--task", metavar="ID", help="only this task (as `get` takes it); ends when it finishes"
    )
    watch.add_argument(
        "--phase",
        type=phase_arg,
        choices=PHASES,
        help="only transitions into this phase (any case)",
    )
    watch.add_argument(
        "--since",
        type=int,
        metavar="SEQ",
        help="first replay every transition after this sequence number",
    )
    _output_flag(watch, "json")

    logs = client_verb(verbs, "logs", _logs, "print a task's output (live with -f)")
    logs.add_argument("id", metavar="ID", help=_ID_HELP)
    logs.add_argument(
        "-f",
        "--follow",
        action="store_true",
        help="keep printing as the task writes, until it ends",
    )
    logs.add_argument("--stream", choices=("stdout", "stderr"), help="only this stream")

    cancel = client_verb(verbs, "cancel", _cancel, "ask for tasks to be cancelled")
    cancel.add_argument("ids", nargs="+", metavar="ID", help=_ID_HELP)
