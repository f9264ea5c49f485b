"""Debian root file systems for runtime images, for hosts that reach no image registry.

Used by `sandbox.imagebuild`'s offline route. `BaseRoot` bootstraps a minimal bookworm root with
`python3` from the host's own Debian mirror at most once per command and hands out copies; each
runtime's packages are added with `apt-get` in a chroot (`install_packages`), the copy is shrunk
(`shrink`) and turned into an image (`import_root`). Every failure raises `RootfsError`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path

SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# Nothing in a task container reads these; translations alone are 33 MB of a 150 MB image.
SHRINK_DIRS = (
    "var/cache/apt",
    "var/lib/apt/lists",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
)
PYTHON_PACKAGES = "usr/lib/python3/dist-packages"
# debootstrap and apt-get print a line per package and step; these mark their few stages.
STAGE_STARTS = ("W:", "E:", "Need to get", "Fetched")
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
CHROOT_ENV = {
    "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    "DEBIAN_FRONTEND": "noninteractive",
    "LC_ALL": "C",
}
# Package scripts (Java's among them) may try to start services; in a chroot none may.
POLICY_RC_D = "#!/bin/sh\n# taskyard image build: no service starts in this root\nexit 101\n"

MIRROR_FIX = "check the mirror is reachable, or set another one in /etc/apt"


class RootfsError(Exception):
    """A root file system could not be made; the message says how to fix it."""


class BaseRoot:
    """A minimal Debian root bootstrapped at most once, in a directory under ``parent``
    (/var/tmp, not /tmp: /tmp is often a small tmpfs and a root is ~250 MB), and its copies."""

    def __init__(self, parent: Path = Path("/var/tmp")) -> None:
        self._parent = parent
        self._dir: Path | None = None
        self._base: Path | None = None
        self._base_has_lists = False

    def close(self, say: Callable[[str], None]) -> None:
        if self._dir is not None:
            remove_root(self._dir, say)
            self._dir = self._base = None

    def fresh_root(self, name: str, *, with_lists: bool, say: Callable[[str], None]) -> Path:
        """A copy of the base root for one runtime; with apt's package lists if asked."""
        base = self._base_root(say)
        if with_lists and not self._base_has_lists:
            say(f"chroot {base} apt-get update")
            _stream(apt_update_argv(base), say, fix=MIRROR_FIX)
            self._base_has_lists = True
        root = base.with_name(name)
        remove_root(root, say)
        copied = subprocess.run(
            ["cp", "-a", "--reflink=auto", str(base), str(root)],
            capture_output=True,
            text=True,
            check=False,
        )
        if copied.returncode != 0:
            raise RootfsError(f"cannot copy {base}: {copied.stderr.strip()} (is /var/tmp full?)")
        return root

    def _base_root(self, say: Callable[[str], None]) -> Path:
        if self._base is not None:
            return self._base
        debootstrap = shutil.which("debootstrap")
        if debootstrap is None:
            raise RootfsError("no registry and no debootstrap: apt-get install debootstrap")
        if os.geteuid() != 0:
            raise RootfsError("debootstrap needs root: run `taskyard image build` as root")
        self._dir = Path(tempfile.mkdtemp(prefix="taskyard-rootfs-", dir=self._parent))
        base = self._dir / "base"
        argv = debootstrap_argv(debootstrap, base, debian_mirror(Path("/etc/apt")))
        say(" ".join(argv))
        try:
            _stream(argv, say, fix=MIRROR_FIX)
        except RootfsError:
            remove_root(self._dir, say)  # the next runtime starts over, not from half a root
            self._dir = None
            raise
        self._base = base
        return base


def debootstrap_argv(debootstrap: str, root: Path, mirror: str) -> list[str]:
    return [debootstrap, "--variant=minbase", "--include=python3", SUITE, str(root), mirror]


def apt_update_argv(root: Path) -> list[str]:
    return _chroot_argv(root, "apt-get", "update", "-o", "Acquire::Languages=none")


def apt_install_argv(root: Path, packages: Iterable[str]) -> list[str]:
    # No pseudo-terminal for dpkg's log: a chroot has no /dev/pts.
    options = ("-y", "--no-install-recommends", "-o", "Dpkg::Use-Pty=0")
    return _chroot_argv(root, "apt-get", "install", *options, *packages)


def _chroot_argv(root: Path, *argv: str) -> list[str]:
    return ["chroot", str(root), *argv]


def install_packages(root: Path, packages: Iterable[str], say: Callable[[str], None]) -> None:
    argv = apt_install_argv(root, packages)
    say(" ".join(argv))
    policy = root / "usr/sbin/policy-rc.d"
    policy.write_text(POLICY_RC_D)
    policy.chmod(0o755)
    # Package scripts read /proc (Java's finds its own path through /proc/self/exe).
    mounted = subprocess.run(
        ["mount", "-t", "proc", "proc", str(root / "proc")], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        raise RootfsError(f"cannot mount /proc in {root}: {mounted.stderr.strip()}")
    try:
        _stream(argv, say, fix="check the package names exist in Debian " + SUITE)
    finally:
        subprocess.run(["umount", str(root / "proc")], capture_output=True, check=False)
        policy.unlink(missing_ok=True)


def shrink(root: Path, say: Callable[[str], None]) -> None:
    say("removing apt caches, package lists, docs and Python test suites from the root")
    for rel in SHRINK_DIRS:
        shutil.rmtree(root / rel, ignore_errors=True)
        (root / rel).mkdir(parents=True, exist_ok=True)
    # Debian ships the test suites of numpy, pandas, scipy, sympy...: 260 MB of python-data.
    for tests in sorted((root / PYTHON_PACKAGES).glob("**/tests")):
        if tests.is_dir() and not tests.is_symlink():
            shutil.rmtree(tests, ignore_errors=True)


def import_root(docker_cli: str, root: Path, name: str, say: Callable[[str], None]) -> None:
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
        raise RootfsError(
            f"docker import failed: {imported.stderr.strip()}"
            " (is /var/lib/docker full? see `docker system df`)"
        )


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
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **CHROOT_ENV},
    ) as proc:
        assert proc.stdout is not None  # stdout=PIPE guarantees it
        for line in proc.stdout:
            tail.append(line.rstrip())
            if line.startswith(STAGE_STARTS) or line.rstrip().endswith(STAGE_ENDINGS):
                say(f"  {line.rstrip()}")
    if proc.returncode != 0:
        raise RootfsError(f"{argv[0]} failed ({fix}):\n" + "\n".join(tail))


def remove_root(root: Path, say: Callable[[str], None]) -> None:
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
