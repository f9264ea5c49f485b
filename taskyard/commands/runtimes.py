"""`taskyard runtimes`: what the server can run (GET /runtimes)."""

import argparse
import json

from taskyard.commands.context import Context, common_flags, user_token
from taskyard.commands.output import table


def add_runtime_verbs(verbs: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    parser = verbs.add_parser(
        "runtimes", help="list the runtimes the server can run", description=__doc__
    )
    common_flags(parser, token_help="bearer token for the API (default: $TASKYARD_TOKEN)")
    parser.add_argument("-o", "--output", choices=["json"], help="output format")
    parser.set_defaults(handler=_runtimes, parser=parser, resolve_token=user_token)


def _runtimes(ctx: Context) -> int:
    listed = ctx.client.runtimes()
    if ctx.args.output == "json":
        ctx.out.write(json.dumps(listed, indent=2) + "\n")
        return 0
    rows = [
        [
            item["name"],
            item["language"],
            item["version"] or "?",
            ", ".join(item["aliases"]),
            item["main_file"],
        ]
        for item in listed["items"]
    ]
    ctx.out.write(table(["NAME", "LANGUAGE", "VERSION", "ALIASES", "MAIN FILE"], rows) + "\n")
    for item in listed["not_installed"]:
        ctx.note(f"not installed: {item['name']} ({item['install']})")
    return 0
