"""How the CLI verbs (`taskyard.commands.tasks`, `.admin`, `.context`) show things to a person:
kubectl-style tables, ages, byte sizes, a task summary, one line per transition, and YAML. Pure
functions of their input (the clock is passed in), so tests check them as tables.
"""

import shutil
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

import yaml

from taskyard.client import Task, TaskStatus, Transition

MB = 1024 * 1024
GB = 1024 * MB
TASK_HEADERS = ["ID", "PHASE", "REASON", "CPU", "RAM", "AGE"]
WIDE_HEADERS = [
    "ID",
    "PHASE",
    "REASON",
    "CPU",
    "GPU",
    "RAM",
    "STORAGE",
    "ATTEMPT",
    "ASSIGNED",
    "AGE",
    "MESSAGE",
]


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def age(since: str | None, now: datetime) -> str:
    """How long ago, as kubectl's AGE column: `5s`, `3m`, `2h`, `4d`; `<unknown>` if unset."""
    moment = parse_time(since)
    if moment is None:
        return "<unknown>"
    seconds = max(0, int((now - moment).total_seconds()))  # a skewed clock never says "-3s"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def format_bytes(count: Any) -> str:
    """Bytes in the contract's units (1MB = 1024*1024 bytes): `512MB`, `7.5GB`."""
    if not isinstance(count, int) or isinstance(count, bool):
        return str(count)
    for unit, size in (("GB", GB), ("MB", MB)):
        if abs(count) >= size:
            return f"{count / size:.1f}".removesuffix(".0") + unit
    return f"{count}B"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns three spaces apart, as `kubectl get` prints them."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = [headers, *rows]
    return "\n".join(
        "   ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def _ids(values: Sequence[int]) -> str:
    return ",".join(str(v) for v in values) or "-"


def task_row(task: Task, now: datetime, *, wide: bool = False) -> list[str]:
    spec, status = task["spec"], task["status"]
    resources = spec["resources"]
    row = [task["id"], status["phase"], status["reason"], str(resources["cpu"])]
    if not wide:
        return [*row, resources["ram"], age(task["created_at"], now)]
    assigned = status.get("assigned") or {"cpus": [], "gpus": []}
    held = f"cpus={_ids(assigned['cpus'])} gpus={_ids(assigned['gpus'])}"
    message = status["message"] if len(status["message"]) <= 60 else status["message"][:57] + "..."
    return [
        *row,
        str(resources["gpu"]),
        resources["ram"],
        resources["storage"],
        str(status["attempt"]),
        held,
        age(task["created_at"], now),
        message,
    ]


def tasks_table(tasks: Sequence[Task], now: datetime, *, wide: bool = False) -> str:
    headers = WIDE_HEADERS if wide else TASK_HEADERS
    return table(headers, [task_row(task, now, wide=wide) for task in tasks])


def _when(text: str | None, now: datetime) -> str:
    moment = parse_time(text)
    if moment is None:
        return "-"
    return f"{moment.strftime('%Y-%m-%dT%H:%M:%SZ')} ({age(text, now)} ago)"


def task_summary(task: Task, now: datetime) -> str:
    """A `kubectl describe`-like view of one task."""
    spec, status = task["spec"], task["status"]
    resources = spec["resources"]
    assigned = status.get("assigned") or {"cpus": [], "gpus": []}
    fields = [
        ("ID", task["id"]),
        ("Phase", status["phase"]),
        ("Reason", status["reason"]),
        ("Message", status["message"] or "-"),
        ("Attempt", str(status["attempt"])),
        (
            "Resources",
            f"cpu {resources['cpu']}, gpu {resources['gpu']}, ram {resources['ram']}, "
            f"storage {resources['storage']}, timeout {spec['timeout_seconds']}s",
        ),
        ("Assigned", f"cpus {_ids(assigned['cpus'])}, gpus {_ids(assigned['gpus'])}"),
        ("Created", _when(task["created_at"], now)),
        ("Scheduled", _when(status.get("scheduled_at"), now)),
        ("Started", _when(status.get("started_at"), now)),
        ("Finished", _when(status.get("finished_at"), now)),
        ("Exit code", "-" if status.get("exit_code") is None else str(status["exit_code"])),
    ]
    lines = [f"{name + ':':<12}{value}" for name, value in fields]
    result = status.get("result")
    if result is None:
        lines.append(f"{'Result:':<12}-")
    else:
        lines.append("Result:")
        lines.extend("  " + line for line in (result.rstrip("\n").split("\n")))
    for stream in ("stdout", "stderr"):
        if status.get(f"{stream}_truncated"):
            lines.append(f"({stream} was cut at the service's output limit)")
    return "\n".join(lines)


class Progress:
    """Where a waited-for task stands, on stderr: one line rewritten in place on a terminal;
    elsewhere (a log, CI) one line per change, so nothing fills up with carriage returns."""

    def __init__(
        self,
        stream: TextIO,
        task_id: str,
        *,
        started: float,
        clock: Callable[[], float],
        tty: bool | None = None,
    ) -> None:
        self._stream = stream
        self._task_id = task_id
        self._started = started
        self._clock = clock
        self._tty = stream.isatty() if tty is None else tty
        self._last: tuple[str, str] | None = None
        self._line = ""

    def show(self, status: TaskStatus) -> None:
        phase, reason = status["phase"], status["reason"]
        elapsed = self._clock() - self._started
        # While Pending, the reason says why it waits (Unschedulable: Insufficient cpu ...).
        why = (
            f" ({reason}: {status['message']})"
            if phase == "Pending" and reason != "Created"
            else ""
        )
        self._line = f"task/{self._task_id}: {phase} after {elapsed:.1f}s{why}"
        if self._tty:
            width = shutil.get_terminal_size().columns
            self._stream.write("\r\x1b[K" + self._line[: max(width - 1, 20)])
        elif (phase, reason) != self._last:
            self._stream.write(self._line + "\n")
        self._last = (phase, reason)
        self._stream.flush()

    def done(self) -> None:
        if self._tty:
            self._stream.write("\r\x1b[K" + self._line + "\n")
            self._stream.flush()


def arrow(stream: TextIO) -> str:
    """`→` where the terminal can show it, `->` otherwise (a LANG=C pipe, say)."""
    try:
        "→".encode(stream.encoding or "ascii")
    except (UnicodeEncodeError, LookupError):
        return "->"
    return "→"


def transition_line(event: Transition, *, to: str = "→") -> str:
    """`SEQ  TIME  TASK  FROM → TO  REASON  message`, the time in the local zone."""
    moment = parse_time(event.get("at"))
    clock = moment.astimezone().strftime("%H:%M:%S.%f")[:-3] if moment else "-"
    source = event.get("from_phase") or "-"
    return (
        f"{event['seq']:>6}  {clock}  {event['task_id']}  {source:>9} {to} "
        f"{event['to_phase']:<9}  {event.get('reason', ''):<16}  "
        f"{event.get('message', '')}"
    ).rstrip()


class _YamlDumper(yaml.SafeDumper):
    """`safe_dump`'s dumper, laid out as kubectl's `-o yaml`: lists indented under their key,
    one line per value however long, `"..."` where a string cannot stand plain (JSON's quotes,
    and YAML's only ones that can escape a control character), and no `&id001` aliases."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)

    def choose_scalar_style(self) -> str:
        style = super().choose_scalar_style()
        return '"' if style == "'" else style

    def ignore_aliases(self, data: Any) -> bool:
        return True


_BLOCK_BREAKS = frozenset("\x85\u2028\u2029")


def _represent_str(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    # Code and output read best as a literal block. PyYAML falls back to quotes where a block
    # cannot hold the text (trailing spaces, control characters); NEL, LS and PS it would put in
    # a block, where a reader turns NEL into a newline, so those stay quoted here.
    block = "\n" in text and not _BLOCK_BREAKS.intersection(text)
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style="|" if block else None)


_YamlDumper.add_representer(str, _represent_str)
_YamlDumper.add_multi_representer(dict, yaml.SafeDumper.represent_dict)  # the client's records


def to_yaml(value: Any) -> str:
    """`-o yaml`: YAML that reads back (`yaml.safe_load`) as exactly what `-o json` prints,
    without its final newline, which `Context.print` adds."""
    text = yaml.dump(
        value,
        Dumper=_YamlDumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=float("inf"),
    )
    return text.removesuffix("\n")
