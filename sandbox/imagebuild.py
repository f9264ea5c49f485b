"""Build the runner image that every task container starts from.

Called by the ``taskyard image build`` CLI command, which ``deploy/setup-host.sh`` runs once per
host. Two ways, tried in order:

* ``dockerfile``: ``docker build`` of ``RUNNER_DIR`` (``sandbox/runner``, shipped in the package,
  ``FROM python:3.12-slim``), for hosts that can reach an image registry;
* ``debootstrap``: a minimal Debian bookworm root file system with ``python3``, fetched from the
  host's own Debian mirror and turned into an image with ``docker import``, for hosts that can
  reach no registry.

Either way the result is checked by running ``python3`` in it the way tasks run (uid 65534, no
network, read-only root). Every failure raises ``ImageBuildError``; its message says how to fix it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path

import docker
import docker.errors

RUNNER_DIR = Path(__file__).with_name("runner")  # the Dockerfile's build context
SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# Without a registry the pull fails within seconds; with one, a slow pull must not stall setup
# forever when the offline path would work too.
DOCKERFILE_TIMEOUT_S = 90
# Nothing in a task container reads these; translations alone are 33 MB of a 150 MB image.
SHRINK_DIRS = (
    "var/cache/apt",
    "var/lib/apt/lists",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
)
# debootstrap prints a line per package and step; these endings mark its few stages.
STAGE_ENDINGS = ("packages...", "system...", "successfully.", "InRelease")
# Mount points that must stay empty directories in an image: the engine fills them at run time.
TAR_EXCLUDES = ("--exclude=./dev/*", "--exclude=./proc/*", "--exclude=./sys/*")
# A plain ``docker import`` image has no config at all; give it what ``python:3.12-slim`` has.
IMPORT_CHANGES = (
    'CMD ["python3"]',
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    "LABEL org.opencontainers.image.title=taskyard-runner",
)
# Run the way tasks run; printing the user's name proves uid 65534 exists in /etc/passwd too.
CHECK_RUN = ("--rm", "--network", "none", "--user", "65534:65534", "--read-only")
CHECK_CODE = "import os, pwd; print(pwd.getpwuid(os.getuid()).pw_name)"


class ImageBuildError(Exception):
    """The runner image could not be built; the message says how to fix it."""


def build_runner_image(
    name: str,
    *,
    context: Path = RUNNER_DIR,
    progress: Callable[[str], None] = print,
    force: bool = False,
) -> str:
    """Make sure image ``name`` exists; return "exists", "dockerfile" or "debootstrap"."""
    started = time.monotonic()

    def say(line: str) -> None:
        progress(f"[{time.monotonic() - started:6.1f}s] {line}")

    if _image_exists(name) and not force:
        say(f"image {name} already exists (rebuild with force)")
        return "exists"
    docker_cli = shutil.which("docker")
    if docker_cli is None:
        raise ImageBuildError("no docker CLI on PATH: apt-get install docker.io")
    say(f"docker build -t {name} {context} (at most {DOCKERFILE_TIMEOUT_S}s)")
    if _run_dockerfile_build(docker_cli, name, context, say):
        how = "dockerfile"
    else:
        _run_debootstrap_build(docker_cli, name, say)
        how = "debootstrap"
    say(f"checking {name}: python3 as uid 65534, no network, read-only")
    check = subprocess.run(
        [docker_cli, "run", *CHECK_RUN, name, "python3", "-c", CHECK_CODE],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if check.returncode != 0 or check.stdout.strip() != "nobody":
        # Untag it so the next run builds again instead of answering "exists".
        subprocess.run([docker_cli, "image", "rm", name], capture_output=True, check=False)
        raise ImageBuildError(
            f"image {name} (built by {how}) cannot run python3 as uid 65534 (nobody); removed it."
            f" Output: {check.stdout.strip()!r} {check.stderr.strip()!r}"
        )
    say(f"image {name} built by {how}")
    return how


def _image_exists(name: str) -> bool:
    try:
        docker.from_env().images.get(name)
    except docker.errors.ImageNotFound:
        return False
    except docker.errors.DockerException as exc:
        raise ImageBuildError(
            f"cannot reach the Docker engine ({exc}); start it: deploy/setup-host.sh"
        ) from exc
    return True


def _run_dockerfile_build(
    docker_cli: str, name: str, context: Path, say: Callable[[str], None]
) -> bool:
    try:
        built = subprocess.run(
            [docker_cli, "build", "-t", name, str(context)],
            capture_output=True,
            text=True,
            timeout=DOCKERFILE_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        say(f"docker build took over {DOCKERFILE_TIMEOUT_S}s; building offline instead")
        return False
    if built.returncode == 0:
        return True
    reason = (built.stderr.strip() or built.stdout.strip()).splitlines()[-1:] or ["no output"]
    say(f"docker build failed ({reason[0]}); building offline instead")
    return False


def _run_debootstrap_build(docker_cli: str, name: str, say: Callable[[str], None]) -> None:
    debootstrap = shutil.which("debootstrap")
    if debootstrap is None:
        raise ImageBuildError("no registry and no debootstrap: apt-get install debootstrap")
    if os.geteuid() != 0:
        raise ImageBuildError("debootstrap needs root: run `taskyard image build` as root")
    mirror = debian_mirror(Path("/etc/apt"))
    # /var/tmp, not /tmp: /tmp is often a small tmpfs and the root file system is ~250 MB.
    root = Path(tempfile.mkdtemp(prefix="taskyard-rootfs-", dir="/var/tmp"))
    try:
        say(f"debootstrap --variant=minbase --include=python3 {SUITE} {root} {mirror}")
        _stream(
            [debootstrap, "--variant=minbase", "--include=python3", SUITE, str(root), mirror],
            say,
            fix="check the mirror is reachable, or set another one in /etc/apt",
        )
        say("removing apt caches, package lists and docs from the root file system")
        for rel in SHRINK_DIRS:
            shutil.rmtree(root / rel, ignore_errors=True)
            (root / rel).mkdir(parents=True, exist_ok=True)
        say(f"tar -C {root} -c . | docker import - {name}")
        changes = [arg for change in IMPORT_CHANGES for arg in ("--change", change)]
        tar = subprocess.Popen(
            ["tar", "-C", str(root), "--numeric-owner", *TAR_EXCLUDES, "-c", "."],
            stdout=subprocess.PIPE,
        )
        assert tar.stdout is not None  # stdout=PIPE guarantees it
        imported = subprocess.run(
            [docker_cli, "import", *changes, "-", name],
            stdin=tar.stdout,
            capture_output=True,
            text=True,
            check=False,
        )
        tar.stdout.close()
        if tar.wait() != 0 or imported.returncode != 0:
            raise ImageBuildError(
                f"docker import failed: {imported.stderr.strip()}"
                " (is /var/lib/docker full? see `docker system df`)"
            )
    finally:
        _remove_root(root, say)


def debian_mirror(apt_dir: Path) -> str:
    """The first http(s) mirror in the apt sources that serves ``SUITE`` itself."""
    files = [
        apt_dir / "sources.list",
        *sorted((apt_dir / "sources.list.d").glob("*.list")),
        *sorted((apt_dir / "sources.list.d").glob("*.sources")),
    ]
    for path in files:
        try:
            text = path.read_text()
        except OSError:
            continue
        for uri, suites in _deb_entries(text, deb822=path.suffix == ".sources"):
            # bookworm-security and third-party repositories cannot bootstrap a system.
            if uri.startswith(("http://", "https://")) and SUITE in suites:
                return uri
    return DEFAULT_MIRROR


def _deb_entries(text: str, *, deb822: bool) -> Iterable[tuple[str, list[str]]]:
    lines = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    if not deb822:
        for line in lines:
            words = line.split()
            if words[:1] == ["deb"] and words[1:2] and words[1].startswith("["):
                # One-line options may contain spaces: `deb [arch=amd64 signed-by=...] URI ...`.
                words = ["deb", *" ".join(words[1:]).split("]", 1)[1].split()]
            if words[:1] == ["deb"] and len(words) >= 3:
                yield words[1], [words[2]]
        return
    for stanza in "\n".join(lines).split("\n\n"):
        pairs = (line.split(":", 1) for line in stanza.splitlines() if ":" in line)
        fields = {key.strip().lower(): value.split() for key, value in pairs}
        if "deb" in fields.get("types", []) and fields.get("enabled", ["yes"]) != ["no"]:
            for uri in fields.get("uris", []):
                yield uri, fields.get("suites", [])


def _stream(argv: list[str], say: Callable[[str], None], *, fix: str) -> None:
    """Run argv, showing its stage lines and keeping a tail for the error message."""
    tail: deque[str] = deque(maxlen=20)
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as proc:
        assert proc.stdout is not None  # stdout=PIPE guarantees it
        for line in proc.stdout:
            tail.append(line.rstrip())
            if line.startswith(("W:", "E:")) or line.rstrip().endswith(STAGE_ENDINGS):
                say(f"  {line.rstrip()}")
    if proc.returncode != 0:
        raise ImageBuildError(f"{argv[0]} failed ({fix}):\n" + "\n".join(tail))


def _remove_root(root: Path, say: Callable[[str], None]) -> None:
    # A killed debootstrap can leave /proc, /sys or bind mounts of the host's /dev inside the
    # root; deleting through those would delete host files. Deepest mount first.
    for point in sorted(_mounts_inside(root), reverse=True):
        subprocess.run(["umount", "--lazy", point], capture_output=True, check=False)
    if _mounts_inside(root):
        say(f"left {root} in place: something is still mounted inside it")
        return
    shutil.rmtree(root, ignore_errors=True)


def _mounts_inside(root: Path) -> list[str]:
    lines = Path("/proc/self/mounts").read_text().splitlines()
    return [p for p in (line.split()[1] for line in lines) if p.startswith(f"{root}/")]
