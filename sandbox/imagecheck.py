"""Check a freshly built runtime image the way tasks run, and read the labels it will carry.

Called by `sandbox.imagebuild` after each build, before the image gets its final name. Each
check runs a container as uid 65534 with no network, no capability, a read-only root and a
tmpfs work area at /work (executable only for runtimes that compile into it), as
`controller.docker_runtime` runs tasks:
- `python3` runs and knows the user (the supervisor is Python);
- a hello world goes through the runtime's own compile and run commands;
- the runtime's `version` command answers (its first line becomes the version label), and for
  runtimes with `modules` each module's `__version__` is read (the packages label).
Any failure raises `ImageCheckFailed` with what the container printed.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from dataclasses import dataclass

from models.runtimes import PACKAGES_LABEL, RUNTIME_LABEL, VERSION_LABEL, Runtime

GREETING = "hello from taskyard"
# A task's main file per runtime, printing GREETING and nothing else on either stream.
# python-data's also multiplies with numpy, groups with pandas and saves a PNG with
# matplotlib, which must then need nothing writable but /work.
HELLO: dict[str, str] = {
    "python": f'print("{GREETING}")\n',
    "python-data": (
        "import numpy as np, pandas as pd, matplotlib.pyplot as plt\n"
        "assert (np.array([[1, 2], [3, 4]]) @ np.array([1, 1])).tolist() == [3, 7]\n"
        'sums = pd.DataFrame({"k": ["a", "b", "a"], "v": [1, 2, 3]}).groupby("k")["v"].sum()\n'
        'assert sums.to_dict() == {"a": 4, "b": 2}\n'
        "plt.plot([1, 2, 3])\n"
        'plt.savefig("plot.png")\n'
        'assert open("plot.png", "rb").read(8) == b"\\x89PNG\\r\\n\\x1a\\n"\n'
        f'print("{GREETING}")\n'
    ),
    "node": f'console.log("{GREETING}");\n',
    "c": f'#include <stdio.h>\nint main(void) {{ puts("{GREETING}"); return 0; }}\n',
    "cpp": f'#include <iostream>\nint main() {{ std::cout << "{GREETING}" << std::endl; }}\n',
    "bash": f'echo "{GREETING}"\n',
    "java": (
        "public class Main { public static void main(String[] args) {"
        f' System.out.println("{GREETING}"); }} }}\n'
    ),
}
CHECK_TIMEOUT_S = 180
# The user, network and privileges of a task; /work is added per runtime (`check_argv`). No
# `-w /work`: with it the engine (20.10) makes the tmpfs root-owned 0755, whatever its mode.
TASK_LIKE = (
    "--rm",
    "--network",
    "none",
    "--user",
    "65534:65534",
    "--read-only",
    "--cap-drop",
    "ALL",
    "--security-opt",
    "no-new-privileges",
    "--pids-limit",
    "256",
    "-e",
    "HOME=/work",
    "-e",
    "TMPDIR=/work",
)
WHOAMI = "import os, pwd; print(pwd.getpwuid(os.getuid()).pw_name)"
MODULE_VERSIONS = (
    "import importlib, json, sys\n"
    "print(json.dumps({m: importlib.import_module(m).__version__ for m in sys.argv[1:]}))"
)


class ImageCheckFailed(Exception):
    """The image does not run the runtime as tasks need; the message says what it printed."""


@dataclass(frozen=True)
class ImageFacts:
    """What the checks read from an image."""

    version: str
    packages: dict[str, str]  # module → version, for runtimes with `modules`


def check_argv(docker_cli: str, image: str, runtime: Runtime, command: list[str]) -> list[str]:
    """`docker run` of `command` in `image` as a task of `runtime` runs, stdin attached."""
    work = "exec" if runtime.exec_work else "noexec"
    env = [arg for key, value in runtime.env for arg in ("-e", f"{key}={value}")]
    tmpfs = f"/work:rw,nosuid,nodev,{work},size=256m,mode=1777"
    return [docker_cli, "run", "-i", *TASK_LIKE, "--tmpfs", tmpfs, *env, image, *command]


def hello_command(runtime: Runtime) -> list[str]:
    """A shell line that saves stdin as the main file in /work, compiles it if need be, and
    runs it there."""
    steps = ["cd /work", f"cat > {shlex.quote(runtime.main_file)}"]
    if runtime.compile:
        steps.append(shlex.join(runtime.compile))
    steps.append(f"exec {shlex.join(runtime.run)}")
    return ["sh", "-c", " && ".join(steps)]


def check_image(docker_cli: str, image: str, runtime: Runtime) -> ImageFacts:
    """Run the checks; return the version and package versions read."""
    user = _run(docker_cli, image, runtime, ["python3", "-c", WHOAMI])
    if user.stdout.strip() != "nobody":
        raise ImageCheckFailed(f"python3 cannot run as uid 65534 (nobody): {_printed(user)}")
    hello = _run(docker_cli, image, runtime, hello_command(runtime), HELLO[runtime.name])
    if hello.returncode != 0 or hello.stdout.strip() != GREETING or hello.stderr.strip():
        raise ImageCheckFailed(f"hello world in {runtime.main_file} failed: {_printed(hello)}")
    answer = _run(docker_cli, image, runtime, list(runtime.version))
    version = first_line(answer.stdout) or first_line(answer.stderr)
    if answer.returncode != 0 or not version:
        raise ImageCheckFailed(f"{shlex.join(runtime.version)} failed: {_printed(answer)}")
    packages: dict[str, str] = {}
    if runtime.modules:
        found = _run(
            docker_cli, image, runtime, ["python3", "-c", MODULE_VERSIONS, *runtime.modules]
        )
        try:
            packages = {str(k): str(v) for k, v in json.loads(found.stdout).items()}
        except ValueError:
            raise ImageCheckFailed(f"cannot import {runtime.modules}: {_printed(found)}") from None
    return ImageFacts(version=version, packages=packages)


def image_labels(runtime: Runtime, facts: ImageFacts) -> dict[str, str]:
    """The labels that tell the controller which runtime an image holds, at which version."""
    labels = {RUNTIME_LABEL: runtime.name, VERSION_LABEL: facts.version}
    if runtime.modules:
        labels[PACKAGES_LABEL] = json.dumps(facts.packages, sort_keys=True)
    return labels


def first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def _run(
    docker_cli: str, image: str, runtime: Runtime, command: list[str], stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            check_argv(docker_cli, image, runtime, command),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=CHECK_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ImageCheckFailed(f"{shlex.join(command)} ran over {CHECK_TIMEOUT_S}s") from None


def _printed(done: subprocess.CompletedProcess[str]) -> str:
    return f"exit {done.returncode}, stdout {done.stdout[-500:]!r}, stderr {done.stderr[-500:]!r}"
