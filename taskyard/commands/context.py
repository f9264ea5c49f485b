"""What the client verbs share, in kubectl's habits: `Context`, `run`, `show`, the common flags
and the exit codes. The verbs themselves are in `taskyard.commands.tasks` (`submit`, `get`,
`list`, `watch`, `logs`, `cancel`) and `taskyard.commands.admin` (`admin ...`); `taskyard.cli`
adds them to its parser and hands a parsed command line to `run`.

Exit codes: 0 done (for `submit --wait`: the task succeeded), 1 the server said no (a task not
found, an ambiguous id prefix) or the task did not succeed, 2 a usage error (as argparse), 3 the
server could not be reached, 130 Ctrl-C while waiting (a watch ends with 0: stopping it is how
it is used).

The server is `--server`, else `$TASKYARD_SERVER`, else the address the last `taskyard serve`
wrote to `<data dir>/server-url`, else http://127.0.0.1:8000. A task is named by its id,
`task/<id>` (what `submit` and `list -o name` print), or a unique prefix of its id of at least
`MIN_PREFIX` characters (what the dashboard shows).
"""

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TextIO, TypeVar

import httpx

from models.paths import SERVER_URL_FILE, data_dir_of
from taskyard.client import (
    DEFAULT_SERVER,
    SERVER_ENV,
    TOKEN_ENV,
    ApiError,
    CannotConnect,
    Client,
    ClientError,
    Task,
)
from taskyard.commands.output import age, tasks_table, to_yaml

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
# The shortest id prefix that names a task: as much of an id as the dashboard shows.
MIN_PREFIX = 8
CANDIDATES_SHOWN = 10
T = TypeVar("T")


class UsageError(Exception):
    """A command line that parses but cannot be carried out; reported as argparse does (2)."""


class AmbiguousTask(ClientError):
    """An id prefix that more than one task's id starts with."""


@dataclass(frozen=True)
class Server:
    """Where the client verbs send their requests, and what said so (for error messages)."""

    url: str
    source: str


def server_address(flag: str | None, data_dir: str | None = None) -> Server:
    """`--server`, else `$TASKYARD_SERVER`, else what the last `taskyard serve` wrote into its
    data dir, else the default."""
    if flag:
        return Server(flag.rstrip("/"), "from --server")
    if os.environ.get(SERVER_ENV):
        return Server(os.environ[SERVER_ENV].rstrip("/"), f"from ${SERVER_ENV}")
    path = data_dir_of(data_dir) / SERVER_URL_FILE
    try:
        written = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        written = ""
    if written.startswith(("http://", "https://")):
        return Server(written.rstrip("/"), f"from {path}, written by `taskyard serve`")
    return Server(DEFAULT_SERVER, "the default")


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Context:
    """What a verb works with; tests pass their own streams, transport and clocks."""

    args: argparse.Namespace
    client: Client
    out: TextIO
    err: TextIO
    stdin: TextIO
    now: Callable[[], datetime] = _utcnow
    monotonic: Callable[[], float] = time.monotonic

    def print(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()  # a watch piped into another program must not sit in a buffer

    def note(self, text: str) -> None:
        self.err.write(text + "\n")
        self.err.flush()


def run(
    args: argparse.Namespace,
    *,
    transport: httpx.BaseTransport | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
    stdin: TextIO | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Carry out one parsed client command; expected failures become a line and an exit code."""
    out, err, stdin = out or sys.stdout, err or sys.stderr, stdin or sys.stdin
    try:
        token = args.resolve_token(args)
    except ClientError as exc:
        err.write(f"error: {exc}\n")
        return exc.exit_code
    server = server_address(args.server, getattr(args, "data_dir", None))
    client = Client(server.url, token=token or "", transport=transport, sleep=sleep)
    ctx = Context(args, client, out, err, stdin)
    try:
        code: int = args.handler(ctx)
        return code
    except UsageError as exc:
        err.write(args.parser.format_usage())
        err.write(f"{args.parser.prog}: error: {exc}\n")
        return EXIT_USAGE
    except CannotConnect as exc:
        err.write(f"error: {exc}\n")
        if str(exc).startswith("cannot reach"):  # never reached: perhaps the wrong address
            err.write(
                f"  (the address {server.url} is {server.source}; name another with "
                f"--server URL or {SERVER_ENV}=URL)\n"
            )
        return exc.exit_code
    except ClientError as exc:
        err.write(f"error: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        err.write("\n")
        return 0 if args.verb == "watch" else EXIT_INTERRUPTED
    except BrokenPipeError:
        # `taskyard list | head -1`: the reader left; say nothing, like other Unix tools.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    finally:
        client.close()


def task_id_of(given: str) -> str:
    """`task/<id>`, as `submit` and `list -o name` print it, is `<id>`."""
    return given.removeprefix("task/")


def on_task(ctx: Context, given: str, act: Callable[[str], T]) -> T:
    """`act(id)` for the task that `given` names: its id, `task/<id>`, or a unique prefix of
    its id. The id is tried as given first; only where no task has it is it looked up as a
    prefix (one more request), and `act` is run again with the whole id."""
    task_id = task_id_of(given)
    try:
        return act(task_id)
    except ApiError as exc:
        if exc.status != 404:
            raise
        whole = _complete(ctx, task_id, exc)
    return act(whole)


def _complete(ctx: Context, prefix: str, not_found: ApiError) -> str:
    """The one task id that starts with `prefix`, else `not_found` or `AmbiguousTask`."""
    if len(prefix) < MIN_PREFIX:
        raise ApiError(
            not_found.status,
            f"{not_found} (an id prefix needs {MIN_PREFIX} characters or more)",
        )
    page = ctx.client.list_page(id_prefix=prefix, limit=CANDIDATES_SHOWN + 1)
    # A server that does not know `id_prefix` lists every task: keep the matches only.
    matches = [task for task in page.items if task["id"].startswith(prefix)]
    if not matches:
        raise not_found
    if len(matches) == 1:
        return str(matches[0]["id"])
    now = ctx.now()
    lines = [
        f"  task/{task['id']}  {task['status']['phase']}  {age(task['created_at'], now)}"
        for task in matches[:CANDIDATES_SHOWN]
    ]
    if len(matches) > CANDIDATES_SHOWN or page.next_cursor:
        lines.append("  ... and more")
    raise AmbiguousTask(
        f"the id prefix {prefix} is ambiguous: more than one task's id starts with it; "
        "give more of the id:\n" + "\n".join(lines)
    )


def show(ctx: Context, task: Task, *, default: Callable[[], str]) -> None:
    """Print one task as `-o` asks, or as `default()` without `-o`."""
    output = getattr(ctx.args, "output", None)
    if output == "json":
        ctx.print(json.dumps(task, indent=2))
    elif output == "yaml":
        ctx.print(to_yaml(task))
    elif output == "wide":
        ctx.print(tasks_table([task], ctx.now(), wide=True))
    elif output == "name":
        ctx.print(f"task/{task['id']}")
    else:
        ctx.print(default())


def common_flags(parser: argparse.ArgumentParser, *, token_help: str) -> None:
    parser.add_argument(
        "--server",
        metavar="URL",
        help=f"taskyard API (default: ${SERVER_ENV}, else the address the last `taskyard "
        f"serve` wrote in its data dir, else {DEFAULT_SERVER})",
    )
    parser.add_argument("--token", help=token_help)


def user_token(args: argparse.Namespace) -> str | None:
    """A client verb's token: `--token`, else $TASKYARD_TOKEN."""
    token: str | None = args.token or os.environ.get(TOKEN_ENV) or None
    return token


def client_verb(
    verbs: "argparse._SubParsersAction[argparse.ArgumentParser]",
    name: str,
    handler: Callable[[Context], int],
    help_text: str,
) -> argparse.ArgumentParser:
    """A client verb's parser, with the flags every one takes and the user's token."""
    parser = verbs.add_parser(name, help=help_text, description=help_text)
    common_flags(parser, token_help=f"bearer token for the API (default: ${TOKEN_ENV})")
    parser.set_defaults(handler=handler, parser=parser, resolve_token=user_token)
    return parser
