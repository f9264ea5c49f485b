"""The `taskyard` command line: `build_parser` and `main`.

Service verbs (`serve`, `api`, `controller`, `image build`, `doctor`) run here, with the
service's settings. Client verbs talk to a running service over REST: they are added from
`taskyard.commands.tasks`, `.batches`, `.runtimes` and `.admin`, and `main` hands them to
`taskyard.commands.context.run`.
"""

import argparse
import sys
from importlib import metadata
from pathlib import Path

from models.runtimes import BY_NAME, DEFAULT_RUNTIME, RUNTIMES, Runtime, find_runtime
from taskyard.commands.admin import add_admin_verbs
from taskyard.commands.batches import add_batch_verbs
from taskyard.commands.context import run
from taskyard.commands.runtimes import add_runtime_verbs
from taskyard.commands.tasks import add_task_verbs


def _server_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default 8000)")
    parser.add_argument("--data-dir", type=Path, help="where the SQLite database lives")
    parser.add_argument(
        "--allowed-host",
        action="append",
        metavar="NAME",
        help="a host name to serve in open mode besides loopback's (repeatable; "
        "'*' for any; default $TASKYARD_ALLOWED_HOSTS)",
    )
    _log_flag(parser)


def _log_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-format", choices=["text", "json"], help="default $TASKYARD_LOG_FORMAT, else text"
    )


def _runtime(name: str) -> Runtime:
    runtime = find_runtime(name)
    if runtime is None:
        known = ", ".join(r.name for r in RUNTIMES)
        raise argparse.ArgumentTypeError(f"no runtime {name!r}; known: {known}")
    return runtime


DESCRIPTION = """\
Run code snippets in hardened containers, with this host's CPUs, GPUs, RAM and disk
shared out among them.

Service verbs run it on this host: serve, api, controller, image, doctor.
Client verbs use a running service over its REST API: submit, get, list, watch, logs,
cancel, batch, runtimes, admin. They call --server URL, else $TASKYARD_SERVER, else the
address the last `taskyard serve` wrote in its data dir, else http://127.0.0.1:8000.

`taskyard VERB --help` tells more about each."""


def version() -> str:
    try:
        return metadata.version("taskyard")
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="taskyard",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"taskyard {version()}")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    _server_flags(verbs.add_parser("serve", help="run the API and the controller in one process"))
    _server_flags(verbs.add_parser("api", help="run only the API"))
    controller = verbs.add_parser("controller", help="run only the controller")
    controller.add_argument("--data-dir", type=Path)
    _log_flag(controller)
    image = verbs.add_parser("image", help="manage the runtime images")
    image_verbs = image.add_subparsers(dest="image_verb", required=True)
    build = image_verbs.add_parser(
        "build",
        help="build a runtime's image, the default's (python) unless told (offline if need be)",
    )
    build.add_argument("--force", action="store_true", help="rebuild even if it exists")
    which = build.add_mutually_exclusive_group()
    which.add_argument(
        "--runtime",
        type=_runtime,
        metavar="NAME",
        help=f"build this runtime's image: {', '.join(r.name for r in RUNTIMES)}, or an alias",
    )
    which.add_argument("--all", action="store_true", help="build every runtime's image")
    doctor = verbs.add_parser(
        "doctor",
        help="check whether this host can run tasks, and whether the service answers",
    )
    doctor.add_argument("--data-dir", type=Path)
    doctor.add_argument(
        "--server",
        metavar="URL",
        help="the service to ask (default: as the client verbs find it)",
    )
    add_task_verbs(verbs)
    add_batch_verbs(verbs)
    add_runtime_verbs(verbs)
    add_admin_verbs(verbs)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "handler", None) is not None:
        # A client verb: no logging setup and no service settings, only an HTTP call.
        return run(args)

    from models.settings import load_settings
    from taskyard.log_format import configure_logging

    overrides = {
        key: getattr(args, key, None) for key in ("host", "port", "data_dir", "log_format")
    }
    if getattr(args, "allowed_host", None):
        overrides["allowed_hosts"] = ",".join(args.allowed_host)
    settings = load_settings(**overrides)
    configure_logging(settings.log_format)

    if args.verb in {"serve", "api"}:
        from taskyard.service import run_api

        run_api(settings, with_controller=args.verb == "serve")
        return 0
    if args.verb == "controller":
        from taskyard.service import run_controller

        run_controller(settings)
        return 0
    if args.verb == "image":
        from sandbox.imagebuild import BuildCache, ImageBuildError, build_runtime_image

        failed = 0
        with BuildCache() as cache:  # --all bootstraps Debian once for every runtime
            for runtime in RUNTIMES if args.all else [args.runtime or BY_NAME[DEFAULT_RUNTIME]]:
                name = runtime.image(settings.image)
                try:
                    how = build_runtime_image(runtime, name, cache=cache, force=args.force)
                except ImageBuildError as exc:  # the others may still build
                    print(f"error: {exc}", file=sys.stderr)
                    failed += 1
                    continue
                print(f"runner image {name}: {how}")
        return 1 if failed else 0
    if args.verb == "admin":  # `admin backup`, the admin verb that works on local files
        from taskyard.backup import run_backup

        return run_backup(settings, args.dest, force=args.force)
    if args.verb == "doctor":
        from taskyard.doctor import diagnose

        return 0 if diagnose(settings, server=args.server) else 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
