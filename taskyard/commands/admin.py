"""`taskyard admin capacity | stuck | reset | token | backup`: the admin verbs, added to the
parser by `taskyard.cli` with `add_admin_verbs`.

They send the admin bearer token, found in `--token`, else `$TASKYARD_ADMIN_TOKEN`, else the file
`<data dir>/admin-token` that the service writes at first start (so an admin on the service's
host needs no flag at all). `backup` is the exception: it reads the database file, and
`taskyard.cli` hands it to `taskyard.backup`.
"""

import argparse
import json
import os
from pathlib import Path
from typing import Any

from models.paths import DATA_DIR_ENV, data_dir_of
from taskyard.client import ApiError, ClientError, Task
from taskyard.commands.context import MIN_PREFIX, Context, common_flags, on_task, show
from taskyard.commands.output import age, format_bytes, table

ADMIN_TOKEN_ENV = "TASKYARD_ADMIN_TOKEN"
TOKEN_FILE = "admin-token"
_SOURCE_HINT = "the admin token comes from --token, $TASKYARD_ADMIN_TOKEN or {path}"


def token_file(data_dir: str | None) -> Path:
    # The service's own rule for its data dir (XDG_DATA_HOME aware), not a copy of it.
    return data_dir_of(data_dir) / TOKEN_FILE


def admin_token(args: argparse.Namespace) -> str:
    """The admin token from the flag, the environment, or the service's token file."""
    if args.token:
        return str(args.token)
    if os.environ.get(ADMIN_TOKEN_ENV):
        return os.environ[ADMIN_TOKEN_ENV].strip()
    path = token_file(args.data_dir)
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise ClientError(
            f"no admin token: pass --token, set ${ADMIN_TOKEN_ENV}, or run this "
            f"where {path} exists (the service writes it at first start; "
            "--data-dir names another data dir)"
        ) from None
    except OSError as exc:
        raise ClientError(f"cannot read the admin token from {path}: {exc.strerror}") from None
    if not token:
        raise ClientError(f"the admin token file {path} is empty")
    return token


def _explain_auth(ctx: Context, exc: ApiError) -> ApiError:
    if exc.status in (401, 403):
        hint = _SOURCE_HINT.format(path=token_file(ctx.args.data_dir))
        return ApiError(exc.status, f"{exc} (HTTP {exc.status}; {hint})")
    return exc


def _capacity(ctx: Context) -> int:
    try:
        capacity = ctx.client.capacity()
    except ApiError as exc:
        raise _explain_auth(ctx, exc) from None
    if ctx.args.output == "json":
        ctx.print(json.dumps(capacity, indent=2))
        return 0
    ctx.print(capacity_text(capacity))
    return 0


def capacity_text(capacity: dict[str, Any]) -> str:
    """Resources as a table, then who holds which CPU and GPU; anything else as JSON."""
    rows, rest = [], {}
    holders = capacity.get("holders")
    for name, value in capacity.items():
        if name == "holders":
            continue
        if isinstance(value, dict) and {"allocatable", "allocated", "free"} <= value.keys():
            show_size = format_bytes if name in ("ram", "storage") else str
            rows.append(
                [name.upper(), *(show_size(value[k]) for k in ("allocatable", "allocated", "free"))]
            )
        else:
            rest[name] = value
    parts = [table(["RESOURCE", "ALLOCATABLE", "ALLOCATED", "FREE"], rows)] if rows else []
    held = _holder_rows(holders)
    if held is not None:
        parts.append(table(["SLOT", "TASK"], held) if held else "No CPU or GPU is held.")
    elif holders is not None:
        rest["holders"] = holders
    if rest:
        parts.append("\n".join(f"{name}: {json.dumps(value)}" for name, value in rest.items()))
    return "\n\n".join(parts)


def _holder_rows(holders: Any) -> list[list[str]] | None:
    """`{"cpus": {"0": "id" or ["id", ...]}}` as rows `cpu 0  id`; None if shaped otherwise."""
    if not isinstance(holders, dict):
        return None
    rows = []
    for kind, slots in holders.items():
        if not isinstance(slots, dict):
            return None
        for slot, who in sorted(slots.items(), key=lambda item: _slot_key(item[0])):
            tasks = who if isinstance(who, list) else [who]
            rows.append([f"{str(kind).removesuffix('s')} {slot}", ", ".join(map(str, tasks))])
    return rows


def _slot_key(slot: str) -> tuple[int, str]:
    return (int(slot), "") if slot.isdigit() else (1 << 30, slot)


def _stuck(ctx: Context) -> int:
    try:
        answer = ctx.client.stuck()
    except ApiError as exc:
        raise _explain_auth(ctx, exc) from None
    if ctx.args.output == "json":
        ctx.print(json.dumps(answer, indent=2))
        return 0
    items = answer.get("items") or []
    if not items:
        ctx.note("No stuck tasks.")
    else:
        now = ctx.now()
        ctx.print(
            table(
                ["TASK", "PHASE", "FOR", "WHY"],
                [
                    [
                        str(item.get("task_id")),
                        str(item.get("phase")),
                        age(item.get("since"), now),
                        str(item.get("why")),
                    ]
                    for item in items
                ],
            )
        )
    for name, value in answer.items():
        if name != "items":  # e.g. whether a controller is running at all
            ctx.note(f"{name}: {json.dumps(value)}")
    return 0


def _reset(ctx: Context) -> int:
    def reset(task_id: str) -> Task:
        # Only the attempt seen now is reset: the same command run twice requeues once.
        attempt = ctx.args.attempt or ctx.client.get(task_id)["status"]["attempt"]
        return ctx.client.reset(task_id, ctx.args.to, attempt=attempt)

    try:
        task = on_task(ctx, ctx.args.id, reset)
    except ApiError as exc:
        raise _explain_auth(ctx, exc) from None
    show(
        ctx,
        task,
        default=lambda: (
            f"task/{task['id']} reset to {ctx.args.to} requested "
            f"(now {task['status']['phase']}, "
            f"attempt {task['status']['attempt']})"
        ),
    )
    return 0


def _token(ctx: Context) -> int:
    """`admin token create NAME | list | revoke ID`."""
    try:
        if ctx.args.token_verb == "create":
            answer = ctx.client.admin_call("POST", "/admin/tokens", {"name": ctx.args.name})
            if ctx.args.output == "json":
                ctx.print(json.dumps(answer, indent=2))
            else:
                ctx.note(
                    f"token/{answer['id']} created for {answer['name']}; it is shown "
                    "only now, keep it:"
                )
                ctx.print(str(answer["token"]))
            return 0
        if ctx.args.token_verb == "revoke":
            answer = ctx.client.admin_call("DELETE", f"/admin/tokens/{ctx.args.id}")
            ctx.print(f"token/{answer['id']} revoked")
            return 0
        answer = ctx.client.admin_call("GET", "/admin/tokens")
    except ApiError as exc:
        raise _explain_auth(ctx, exc) from None
    if ctx.args.output == "json":
        ctx.print(json.dumps(answer, indent=2))
        return 0
    now = ctx.now()
    ctx.print(
        table(
            ["ID", "NAME", "AGE", "REVOKED"],
            [
                [
                    str(t["id"]),
                    str(t["name"]),
                    age(t.get("created_at"), now),
                    "yes" if t.get("revoked_at") else "",
                ]
                for t in answer["items"]
            ],
        )
    )
    return 0


def add_admin_verbs(verbs: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    admin = verbs.add_parser(
        "admin",
        help="admin verbs: capacity, stuck, reset, token, backup",
        description="Admin verbs; they need the admin token.",
    )
    admin_verbs = admin.add_subparsers(dest="admin_verb", required=True)

    def verb(name: str, handler: Any, help_text: str) -> argparse.ArgumentParser:
        parser = admin_verbs.add_parser(name, help=help_text, description=help_text)
        common_flags(
            parser,
            token_help=f"admin token (default: ${ADMIN_TOKEN_ENV}, else <data dir>/admin-token)",
        )
        parser.add_argument(
            "--data-dir",
            help="the service's data dir, to find its admin-token "
            f"(default: ${DATA_DIR_ENV}, else "
            "~/.local/share/taskyard)",
        )
        parser.set_defaults(handler=handler, parser=parser, resolve_token=admin_token)
        return parser

    capacity = verb("capacity", _capacity, "allocatable, allocated and free per resource")
    capacity.add_argument("-o", "--output", choices=["json"])
    stuck = verb("stuck", _stuck, "non-terminal tasks that make no progress, and why")
    stuck.add_argument("-o", "--output", choices=["json"])
    reset = verb("reset", _reset, "requeue (to Pending) or fail (to Failed) a task")
    reset.add_argument(
        "id",
        metavar="ID",
        help=f"the task's id, task/<id>, or a unique prefix of its id ({MIN_PREFIX}+ characters)",
    )
    reset.add_argument(
        "--to",
        choices=["Pending", "Failed"],
        default="Pending",
        help="Pending requeues it (attempt + 1), Failed ends it (default Pending)",
    )
    reset.add_argument(
        "--attempt",
        type=int,
        metavar="N",
        help="reset only while the task is at attempt N (default: the attempt "
        "it is at now; a repeated command then resets once)",
    )
    reset.add_argument("-o", "--output", choices=["json", "yaml", "name"])
    token = verb("token", _token, "user API tokens: create, list, revoke")
    token_verbs = token.add_subparsers(dest="token_verb", required=True)
    create = token_verbs.add_parser("create", help="create a token (shown once)")
    create.add_argument("name", metavar="NAME")
    token_verbs.add_parser("list", help="list tokens (never their secrets)")
    revoke = token_verbs.add_parser("revoke", help="revoke a token")
    revoke.add_argument("id", metavar="ID")
    token.add_argument("-o", "--output", choices=["json"])
    # The one admin verb that reads the service's files rather than calling its API:
    # `taskyard.cli` hands it to `taskyard.backup`.
    backup = admin_verbs.add_parser(
        "backup",
        help="copy the database, consistently, while the service runs",
        description="Copy the service's SQLite database to DEST (a file, or a directory for a "
        "dated file in it) as of one commit, while the service runs. It reads the data dir: run "
        "it on the service's host, as a user who can read it.",
    )
    backup.add_argument("dest", metavar="DEST")
    backup.add_argument("--force", action="store_true", help="replace DEST if it exists")
    backup.add_argument(
        "--data-dir",
        type=Path,
        help=f"the service's data dir (default: ${DATA_DIR_ENV}, else ~/.local/share/taskyard)",
    )
    backup.set_defaults(handler=None)
