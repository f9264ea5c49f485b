"""Build the image of a runtime (`models.runtimes`) that its task containers start from.

Called by ``taskyard image build`` (``--runtime NAME``, ``--all``); ``deploy/setup-host.sh``
builds the default runtime, ``deploy/test.sh`` all of them. Two ways, tried in order:

* ``dockerfile``: ``docker build`` of ``RUNNER_DIR`` (``sandbox/runner``, shipped in the package,
  ``FROM python:3.12-slim``) with the runtime's packages as build arguments, for hosts that can
  reach an image registry;
* ``debootstrap``: a minimal Debian bookworm root file system with ``python3`` from the host's
  own Debian mirror, bootstrapped once per command (``BuildCache``) and copied per runtime,
  the runtime's packages added by ``apt-get`` in a chroot, then ``docker import``.

Either way the image lands under a candidate name first. ``sandbox.imagecheck`` runs it the way
tasks run and reads its versions; only then is it named, with the labels the controller reads
(``docker build`` of ``FROM <candidate>`` plus ``--label``: no registry needed). A failed check
leaves the image already named untouched. Every failure raises ``ImageBuildError``; its message
says how to fix it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import docker
import docker.errors

from models.runtimes import RUNTIME_LABEL, Runtime
from sandbox import fontcache
from sandbox.imagecheck import ImageCheckFailed, check_image, image_labels
from sandbox.rootfs import (
    BaseRoot,
    RootfsError,
    import_root,
    install_packages,
    remove_root,
    shrink,
)

RUNNER_DIR = Path(__file__).with_name("runner")  # the Dockerfile's build context
# Without a registry the pull fails within seconds; with one, a slow pull must not stall setup
# forever when the offline path would work too. Installing packages takes longer.
DOCKERFILE_TIMEOUT_S = 90
DOCKERFILE_PACKAGES_TIMEOUT_S = 900
# Run in a `docker build` step on images with matplotlib, with MPLCONFIGDIR=fontcache.BUILT:
# importing font_manager writes the font cache there, and `fontcache` goes beside matplotlib.
FONT_CACHE_SCRIPT = """\
import pathlib, sys, matplotlib, matplotlib.font_manager
site = pathlib.Path(matplotlib.__file__).parents[1]
site.joinpath("taskyard_fontcache.py").write_text(sys.argv[1])
site.joinpath("taskyard_fontcache.pth").write_text(sys.argv[2])
"""
FONT_CACHE_PTH = "import taskyard_fontcache; taskyard_fontcache.seed()\n"


class ImageBuildError(Exception):
    """A runtime image could not be built; the message says how to fix it."""


class BuildCache:
    """What the builds of one command share: the Debian base root, bootstrapped at most once
    (removed on exit), whether the Dockerfile route failed, and where progress lines go."""

    def __init__(self, progress: Callable[[str], None] = print, parent: Path = Path("/var/tmp")):
        self.progress = progress
        self.dockerfile_failed = False
        self.roots = BaseRoot(parent)

    def __enter__(self) -> BuildCache:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.roots.close(self.progress)


def build_runtime_image(
    runtime: Runtime,
    name: str,
    *,
    cache: BuildCache,
    context: Path = RUNNER_DIR,
    force: bool = False,
) -> str:
    """Make sure image ``name`` holds ``runtime``, checked and labelled; return "exists",
    "labelled" (it existed without labels), "dockerfile" or "debootstrap"."""
    started = time.monotonic()

    def say(line: str) -> None:
        cache.progress(f"[{time.monotonic() - started:6.1f}s] {line}")

    docker_cli = shutil.which("docker")
    if docker_cli is None:
        raise ImageBuildError("no docker CLI on PATH: apt-get install docker.io")
    labels = _labels_of(name)
    if labels is not None and not force:
        held = labels.get(RUNTIME_LABEL)
        if held == runtime.name:
            say(f"image {name} already exists (rebuild with force)")
            return "exists"
        if held:
            raise ImageBuildError(
                f"image {name} holds runtime {held}, not {runtime.name}: rebuild it with force"
            )
        say(f"image {name} exists but carries no runtime labels: checking and labelling it")
        _check_and_name(docker_cli, runtime, name, name, say)
        return "labelled"
    candidate = candidate_name(name)
    try:
        if _run_dockerfile_build(docker_cli, runtime, candidate, context, cache, say):
            how = "dockerfile"
        else:
            _run_debootstrap_build(docker_cli, runtime, candidate, cache, say)
            how = "debootstrap"
        if "matplotlib" in runtime.modules:
            _build_font_cache(docker_cli, candidate, say)
        _check_and_name(docker_cli, runtime, candidate, name, say)
    finally:
        subprocess.run([docker_cli, "image", "rm", candidate], capture_output=True, check=False)
    say(f"image {name} built by {how}")
    return how


def candidate_name(name: str) -> str:
    """Where a build lands before its check: ``taskyard-runner-node:1`` →
    ``taskyard-runner-node:1-candidate``."""
    repo, colon, tag = name.rpartition(":")
    if not colon or "/" in tag:  # no tag, or a registry port ("host:5000/name")
        return f"{name}:candidate"
    return f"{repo}:{tag}-candidate"


def dockerfile_build_args(runtime: Runtime) -> dict[str, str]:
    """The Dockerfile's build arguments for ``runtime``. Debian's ``python3-*`` packages are
    left out: they serve Debian's Python, and ``python:3.12-slim`` runs its own, which gets
    ``pip_packages`` instead."""
    apt = [package for package in runtime.apt_packages if not package.startswith("python3-")]
    return {"APT_PACKAGES": " ".join(apt), "PIP_PACKAGES": " ".join(runtime.pip_packages)}


def dockerfile_argv(docker_cli: str, name: str, context: Path, runtime: Runtime) -> list[str]:
    build_args = dockerfile_build_args(runtime).items()
    args = [arg for key, value in build_args for arg in ("--build-arg", f"{key}={value}")]
    return [docker_cli, "build", *args, "-t", name, str(context)]


def label_argv(docker_cli: str, name: str, labels: dict[str, str]) -> list[str]:
    """``docker build`` that names an image with labels; its Dockerfile, on stdin, is
    ``FROM <image>``. The classic builder takes a local base image without a registry."""
    flags = [arg for key, value in sorted(labels.items()) for arg in ("--label", f"{key}={value}")]
    return [docker_cli, "build", "--quiet", *flags, "-t", name, "-"]


def _check_and_name(
    docker_cli: str, runtime: Runtime, source: str, name: str, say: Callable[[str], None]
) -> None:
    say(f"checking {source}: {runtime.name} as uid 65534, no network, read-only root")
    try:
        facts = check_image(docker_cli, source, runtime)
    except ImageCheckFailed as exc:
        raise ImageBuildError(
            f"the {runtime.name} image failed its check, so {name} stays as it was: {exc}"
        ) from exc
    packages = ", ".join(f"{module} {version}" for module, version in facts.packages.items())
    say(f"{runtime.name}: {facts.version}" + (f" ({packages})" if packages else ""))
    old = _image_id(name)
    named = subprocess.run(
        label_argv(docker_cli, name, image_labels(runtime, facts)),
        input=f"FROM {source}\n",
        capture_output=True,
        text=True,
        env={**os.environ, "DOCKER_BUILDKIT": "0"},
        check=False,
    )
    if named.returncode != 0:
        raise ImageBuildError(f"cannot label {source} as {name}: {named.stderr.strip()}")
    if old is not None and old != _image_id(name):
        # The image it replaces, unless a container still uses it (then the engine refuses).
        subprocess.run([docker_cli, "image", "rm", old], capture_output=True, check=False)


def _build_font_cache(docker_cli: str, name: str, say: Callable[[str], None]) -> None:
    say(f"building matplotlib's font cache into {name}:{fontcache.BUILT}")
    dockerfile = (
        f"FROM {name}\nARG SCRIPT\nARG HOOK\nARG PTH\n"
        f'RUN MPLCONFIGDIR={fontcache.BUILT} python3 -c "$SCRIPT" "$HOOK" "$PTH"\n'
    )
    hook = Path(fontcache.__file__).read_text()
    args = {"SCRIPT": FONT_CACHE_SCRIPT, "HOOK": hook, "PTH": FONT_CACHE_PTH}
    flags = [arg for key, value in args.items() for arg in ("--build-arg", f"{key}={value}")]
    built = subprocess.run(
        [docker_cli, "build", "--quiet", *flags, "-t", name, "-"],
        input=dockerfile,
        capture_output=True,
        text=True,
        env={**os.environ, "DOCKER_BUILDKIT": "0"},
        check=False,
    )
    if built.returncode != 0:
        raise ImageBuildError(f"cannot build matplotlib's font cache: {built.stderr.strip()}")


def _labels_of(name: str) -> dict[str, str] | None:
    """The labels of image ``name``, or None when there is no such image."""
    try:
        image = docker.from_env().images.get(name)
    except docker.errors.ImageNotFound:
        return None
    except docker.errors.DockerException as exc:
        raise ImageBuildError(
            f"cannot reach the Docker engine ({exc}); start it: deploy/setup-host.sh"
        ) from exc
    return dict(image.labels or {})


def _image_id(name: str) -> str | None:
    try:
        return str(docker.from_env().images.get(name).id)
    except docker.errors.ImageNotFound:
        return None


def _run_dockerfile_build(
    docker_cli: str,
    runtime: Runtime,
    name: str,
    context: Path,
    cache: BuildCache,
    say: Callable[[str], None],
) -> bool:
    if cache.dockerfile_failed:
        say("the Dockerfile route failed earlier in this command: building offline")
        return False
    argv = dockerfile_argv(docker_cli, name, context, runtime)
    packages = runtime.apt_packages or runtime.pip_packages
    timeout = DOCKERFILE_PACKAGES_TIMEOUT_S if packages else DOCKERFILE_TIMEOUT_S
    say(f"{' '.join(argv[1:])} (at most {timeout}s)")
    try:
        built = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        say(f"docker build took over {timeout}s; building offline instead")
        cache.dockerfile_failed = True
        return False
    if built.returncode == 0:
        return True
    reason = (built.stderr.strip() or built.stdout.strip()).splitlines()[-1:] or ["no output"]
    say(f"docker build failed ({reason[0]}); building offline instead")
    cache.dockerfile_failed = True
    return False


def _run_debootstrap_build(
    docker_cli: str,
    runtime: Runtime,
    name: str,
    cache: BuildCache,
    say: Callable[[str], None],
) -> None:
    try:
        root = cache.roots.fresh_root(runtime.name, with_lists=bool(runtime.apt_packages), say=say)
        try:
            if runtime.apt_packages:
                install_packages(root, runtime.apt_packages, say)
            shrink(root, say)
            import_root(docker_cli, root, name, say)
        finally:
            remove_root(root, say)
    except RootfsError as exc:
        raise ImageBuildError(str(exc)) from exc
