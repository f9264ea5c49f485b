"""The keys taskyard needs in dockerd's daemon.json, for deploy/setup-host.sh.

    python3 deploy/daemon_json.py [--dry-run] [--runsc PATH] [--path FILE]

- `live-restore: true`: task containers keep running while dockerd restarts (an upgrade, a
  crash), and the controller adopts them again;
- with `--runsc PATH`, gVisor's runsc registered as the runtime `runsc`, with its own network
  stack turned off.

Other keys are kept. It prints one line saying what it changes (or that nothing needs to), then,
unless `--dry-run`, saves the previous file beside it as `daemon.json.<UTC time>.bak` and writes
the new one in its place. Exit status: 0 changed (or would change), 1 already right, 2 error.
Standard library only: it runs with the host's python3 before any virtualenv exists.
"""

import argparse
import json
import os
import shutil
import sys
from datetime import UTC, datetime
from typing import Any

DEFAULT_PATH = "/etc/docker/daemon.json"


def wanted(config: dict[str, Any], runsc: str | None) -> dict[str, Any]:
    result = dict(config, **{"live-restore": True})
    if runsc:
        runtimes = dict(result.get("runtimes", {}))
        runtimes["runsc"] = {"path": runsc, "runtimeArgs": ["--network=none"]}
        result["runtimes"] = runtimes
    return result


def changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    said = []
    if old.get("live-restore") is not True:
        was = json.dumps(old["live-restore"]) if "live-restore" in old else "(unset)"
        said.append(f"live-restore: {was} -> true")
    runsc = new.get("runtimes", {}).get("runsc")
    if runsc != old.get("runtimes", {}).get("runsc"):
        said.append(f"runtimes.runsc: {json.dumps(runsc)}")
    return said


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--path", default=DEFAULT_PATH)
    parser.add_argument("--runsc", help="runsc's path, to register it as a runtime")
    parser.add_argument("--dry-run", action="store_true", help="say what would change, only")
    args = parser.parse_args(argv)

    try:
        with open(args.path) as f:
            old = json.load(f)
    except FileNotFoundError:
        old = {}
    except (OSError, ValueError) as exc:
        print(f"{args.path}: cannot read it ({exc}); fix or move it, then run again")
        return 2
    if not isinstance(old, dict):
        print(f"{args.path}: holds no JSON object; fix or move it, then run again")
        return 2
    new = wanted(old, args.runsc)
    if new == old:
        print(f"{args.path}: already has what taskyard needs (live-restore, runtimes); unchanged")
        return 1
    what = "; ".join(changes(old, new)) + " (other keys kept)"
    backup = None
    if os.path.exists(args.path):
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        backup = f"{args.path}.{stamp}.bak"
    saved = f", after saving the previous file as {backup}" if backup else " (a new file)"
    print(f"{args.path}: set {what}{saved}")
    if args.dry_run:
        return 0
    os.makedirs(os.path.dirname(args.path) or ".", exist_ok=True)
    if backup:
        shutil.copy2(args.path, backup)
    with open(args.path + ".tmp", "w") as f:
        json.dump(new, f, indent=2)
        f.write("\n")
    os.replace(args.path + ".tmp", args.path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
