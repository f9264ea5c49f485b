"""The batch verbs of `taskyard`: `batch submit FILE.jsonl` (with `--wait` and `--out`),
`batch get ID` and `batch cancel ID`, added to the parser by `taskyard.cli` with
`add_batch_verbs`.

`batch submit` reads one task body a line (what POST /tasks takes; `resources` may be left out
or given in part, as `submit`'s flags fill them in), sends them as one batch (POST /batches:
all stored, or none), and with `--wait` counts the tasks as they finish by watching the batch,
whose stream the server ends once every task of it has ended. `--out` writes one JSON line per
task, in the order of the input.
"""

import argparse
import json
import shutil
from collections import Counter
from typing import Any, TextIO

from taskyard.client import (
    TERMINAL_PHASES,
    ApiError,
    Batch,
    BatchCreated,
    HistoryGone,
    Task,
)
from taskyard.commands.context import EXIT_INTERRUPTED, Context, UsageError, client_verb
from taskyard.commands.output import parse_time, to_yaml

MAX_BATCH_TASKS = 1000  # the server's limit on one POST /batches
POLL_SECONDS = 1.0  # how often a wait without a watch asks where the batch stands
PAGE_SIZE = 500  # the most tasks one GET /tasks answers
# The fields of a task that `--out` writes, after `index` and `id`.
RESULT_FIELDS = (
    "phase",
    "reason",
    "message",
    "exit_code",
    "result",
    "stdout",
    "stderr",
    "stdout_truncated",
    "stderr_truncated",
    "files",
    "files_truncated",
    "usage",
)


def read_tasks(path: str, stdin: TextIO) -> list[dict[str, Any]]:
    """The task bodies of a JSON Lines file (`-`: stdin); blank lines are skipped. A line that
    is not a JSON object is a usage error naming its number."""
    try:
        if path == "-":
            lines = stdin.read().splitlines()
        else:
            with open(path, encoding="utf-8") as handle:
                lines = handle.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    tasks: list[dict[str, Any]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            task = json.loads(line)
        except ValueError as exc:
            raise UsageError(f"{path}:{number}: not JSON: {exc}") from None
        if not isinstance(task, dict) or not isinstance(task.get("code"), str):
            raise UsageError(f"{path}:{number}: a task body must be a JSON object with code")
        tasks.append(task)
    if not tasks:
        raise UsageError(f"{path}: no tasks (one JSON task body a line)")
    if len(tasks) > MAX_BATCH_TASKS:
        raise UsageError(
            f"{path}: {len(tasks)} tasks; one batch holds at most {MAX_BATCH_TASKS}: split the file"
        )
    return tasks


class BatchProgress:
    """How many of a batch's tasks have finished, on stderr: one line rewritten in place on a
    terminal; elsewhere a line at each tenth of the batch, so a log does not get one per task."""

    def __init__(self, ctx: Context, batch_id: str, count: int, started: float) -> None:
        self._ctx = ctx
        self._batch_id = batch_id
        self._count = count
        self._started = started
        self._tty = ctx.err.isatty()
        self._phases: dict[str, str] = {}  # task id -> its latest phase
        self._shown = -1

    def see(self, task_id: str, phase: str) -> None:
        self._phases[task_id] = phase
        self.show()

    @property
    def line(self) -> str:
        ended = Counter(phase for phase in self._phases.values() if phase in TERMINAL_PHASES)
        done = sum(ended.values())
        elapsed = self._ctx.monotonic() - self._started
        outcome = ", ".join(f"{phase} {count}" for phase, count in sorted(ended.items()))
        return (
            f"batch/{self._batch_id}: {done}/{self._count} done"
            + (f" ({outcome})" if outcome else "")
            + f" after {elapsed:.1f}s"
        )

    def show(self) -> None:
        done = sum(1 for phase in self._phases.values() if phase in TERMINAL_PHASES)
        if self._tty:
            width = shutil.get_terminal_size().columns
            self._ctx.err.write("\r\x1b[K" + self.line[: max(width - 1, 20)])
            self._ctx.err.flush()
        elif done * 10 // self._count != self._shown:
            self._shown = done * 10 // self._count
            self._ctx.note(self.line)

    def done(self) -> None:
        if self._tty:
            self._ctx.err.write("\r\x1b[K" + self.line + "\n")
            self._ctx.err.flush()


def _wait(ctx: Context, created: BatchCreated, progress: BatchProgress) -> None:
    """Until every task of the batch has ended: its watch, counted as it goes; where the watch
    cannot be had, each task's own wait in turn."""
    progress.show()

    def retrying(why: str, attempt: int, delay: float) -> None:
        ctx.note(f"watch: connection lost ({why}); reconnecting in {delay:.1f}s (try {attempt})")

    try:
        for event in ctx.client.watch(batch=created["id"], on_retry=retrying):
            progress.see(event["task_id"], event["to_phase"])
        return
    except HistoryGone:
        ctx.note("watch: history compacted; waiting for each task instead")
    except ApiError as exc:
        if exc.status != 404:
            raise
        ctx.note("watch: this server cannot watch a batch; waiting for each task instead")
    for task_id in created["task_ids"]:
        progress.see(task_id, ctx.client.wait(task_id)["status"]["phase"])


def _results(ctx: Context, created: BatchCreated) -> list[Task]:
    """The batch's tasks, in the order they were sent (GET /tasks?batch=, a page at a time)."""
    by_id: dict[str, Task] = {}
    for task in ctx.client.list(batch=created["id"], page_size=PAGE_SIZE):
        by_id[task["id"]] = task
    missing = [task_id for task_id in created["task_ids"] if task_id not in by_id]
    for task_id in missing:  # not listed (cannot happen on a server of this version)
        by_id[task_id] = ctx.client.get(task_id)
    return [by_id[task_id] for task_id in created["task_ids"]]


def result_line(index: int, task: Task) -> str:
    status = task["status"]
    record = {"index": index, "id": task["id"]}
    record.update({name: status.get(name) for name in RESULT_FIELDS})
    return json.dumps(record, ensure_ascii=False)


def _submit(ctx: Context) -> int:
    args = ctx.args
    tasks = read_tasks(args.file, ctx.stdin)
    ctx.note(f"read {len(tasks)} tasks from {args.file}")
    started = ctx.monotonic()
    created = ctx.client.submit_batch(tasks)
    batch_id = created["id"]
    waiting = args.wait or args.out is not None
    took = ctx.monotonic() - started
    if args.output == "json":
        ctx.print(json.dumps(created, indent=2))
    elif args.output == "name":
        ctx.print(f"batch/{batch_id}")
    elif not waiting:
        ctx.print(f"batch/{batch_id} created ({created['count']} tasks)")
    if not waiting:
        return 0
    ctx.note(f"batch/{batch_id} created: {created['count']} tasks stored in {took:.2f}s")
    progress = BatchProgress(ctx, batch_id, created["count"], started)
    try:
        _wait(ctx, created, progress)
    except KeyboardInterrupt:
        ctx.note(
            f"\ninterrupted: batch/{batch_id} keeps going; "
            f"`taskyard batch cancel {batch_id}` stops it"
        )
        return EXIT_INTERRUPTED
    results = _results(ctx, created)
    for task in results:  # the count as it ended, whatever the watch saw of it
        progress.see(task["id"], task["status"]["phase"])
    progress.done()
    if args.out is not None:
        try:
            with open(args.out, "w", encoding="utf-8") as out:
                for index, task in enumerate(results):
                    out.write(result_line(index, task) + "\n")
        except OSError as exc:
            ctx.note(f"error: cannot write {args.out}: {exc.strerror or exc}")
            return 1
        ctx.note(f"wrote {len(results)} results to {args.out}")
    failed = [task for task in results if task["status"]["phase"] != "Succeeded"]
    for task in failed[:10]:
        status = task["status"]
        ctx.note(f"  task/{task['id']} {status['phase']} ({status['reason']}): {status['message']}")
    if len(failed) > 10:
        ctx.note(f"  ... and {len(failed) - 10} more that did not succeed")
    return 1 if failed else 0


def batch_summary(batch: Batch) -> str:
    """A `kubectl describe`-like view of a batch."""
    phases = ", ".join(f"{phase} {count}" for phase, count in batch["phases"].items() if count)
    created = parse_time(batch.get("created_at"))
    fields = [
        ("ID", batch["id"]),
        ("Created", created.strftime("%Y-%m-%dT%H:%M:%SZ") if created else "-"),
        ("Tasks", str(batch["count"])),
        ("Done", f"{batch['done']}/{batch['count']}"),
        ("Phases", phases or "-"),
        ("Cancel requested", str(batch["cancel_requested"])),
    ]
    return "\n".join(f"{name + ':':<18}{value}" for name, value in fields)


def _show(ctx: Context, batch: Batch, default: str) -> None:
    if ctx.args.output == "json":
        ctx.print(json.dumps(batch, indent=2))
    elif ctx.args.output == "yaml":
        ctx.print(to_yaml(batch))
    else:
        ctx.print(default)


def _get(ctx: Context) -> int:
    batch = ctx.client.batch(ctx.args.id)
    _show(ctx, batch, batch_summary(batch))
    return 0


def _cancel(ctx: Context) -> int:
    batch = ctx.client.cancel_batch(ctx.args.id)
    unfinished = batch["count"] - batch["done"]
    _show(
        ctx,
        batch,
        f"batch/{batch['id']} cancellation requested "
        f"({unfinished} of {batch['count']} tasks not finished yet)",
    )
    return 0


def add_batch_verbs(verbs: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add `batch submit | get | cancel` to the `taskyard` parser."""
    batch = verbs.add_parser("batch", help="submit many tasks at once, follow and cancel them")
    batch_verbs = batch.add_subparsers(dest="batch_verb", required=True)

    submit = client_verb(
        batch_verbs,
        "submit",
        _submit,
        f"submit a JSON Lines file of task bodies (at most {MAX_BATCH_TASKS}) as one batch",
    )
    submit.add_argument("file", metavar="FILE", help="one task body a line; `-` reads stdin")
    submit.add_argument(
        "--wait",
        action="store_true",
        help="count the tasks as they finish; exit 0 when every one succeeded",
    )
    submit.add_argument(
        "--out",
        metavar="FILE",
        help="write one JSON line per task (id, phase, reason, exit_code, stdout, stderr, ...) "
        "in input order, once all have ended (implies --wait)",
    )
    submit.add_argument("-o", "--output", choices=("json", "name"), help="output format")

    get = client_verb(batch_verbs, "get", _get, "show where a batch stands")
    get.add_argument("id", metavar="ID")
    get.add_argument("-o", "--output", choices=("json", "yaml"), help="output format")

    cancel = client_verb(
        batch_verbs, "cancel", _cancel, "ask for every unfinished task of a batch to stop"
    )
    cancel.add_argument("id", metavar="ID")
    cancel.add_argument("-o", "--output", choices=("json", "yaml"), help="output format")
