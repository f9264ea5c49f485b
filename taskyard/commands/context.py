"""What the client verbs share, in kubectl's habits: `Context`, `run`, `show`, the common flags
and the exit codes. The verbs themselves are in `taskyard.commands.tasks` (`submit`, `get`,
`list`, `watch`, `logs`, `cancel`) and `taskyard.commands.admin` (`admin ...`); `taskyard.cli`
adds them to its parser and hands a parsed command line to `run`.

Exit codes: 0 done (for `submit --wait`: the task succeeded), 1 the server said no or the task
did not succeed, 2 a usage error (as argparse), 3 the server could not be reached, 130 Ctrl-C
while waiting (a watch ends with 0: stopping it is how it is used).
"""

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TextIO

import httpx

from taskyard.client import SERVER_ENV, Client, ClientError, Task, server_url
from taskyard.commands.output import tasks_table, to_yaml

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """A command line that parses but cannot be carried out; reported as argparse does (2)."""


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
    client = Client(server_url(args.server), token=token or "", transport=transport, sleep=sleep)
    ctx = Context(args, client, out, err, stdin)
    try:
        code: int = args.handler(ctx)
        return code
    except UsageError as exc:
        err.write(args.parser.format_usage())
        err.write(f"{args.parser.prog}: error: {exc}\n")
        return EXIT_USAGE
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
        help=f"taskyard API (default: ${SERVER_ENV}, else http://127.0.0.1:8000)",
    )
    parser.add_argument("--token", help=token_help)
