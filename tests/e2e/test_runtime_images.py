"""`taskyard image build` on the real engine: a runtime built offline, checked and labelled, and
what the build does with images that exist already. Builds under names of its own, removed at
the end; the bash build bootstraps Debian (about a minute; root and the host's mirror)."""

import contextlib
import os
import subprocess
from collections.abc import Iterator

import docker
import docker.errors
import pytest
from harness import IMAGE

from controller.docker_runtime import DockerRuntime
from models.runtimes import BY_NAME, RUNTIME_LABEL, VERSION_LABEL
from sandbox.imagebuild import (
    RUNNER_DIR,
    BuildCache,
    ImageBuildError,
    build_runtime_image,
    candidate_name,
    dockerfile_argv,
)
from sandbox.imagecheck import check_image
from taskyard.doctor import runtime_findings

DEFAULT = f"taskyard-imagetest-{os.getpid()}:1"  # python's name; bash's is derived from it
BASH = BY_NAME["bash"].image(DEFAULT)


@pytest.fixture(scope="module")
def built(engine: docker.DockerClient) -> Iterator[tuple[str, list[str]]]:
    lines: list[str] = []
    with BuildCache(progress=lines.append) as cache:
        how = build_runtime_image(BY_NAME["bash"], BASH, cache=cache, force=True)
    yield how, lines
    for name in (BASH, DEFAULT):
        with contextlib.suppress(docker.errors.ImageNotFound):
            engine.images.remove(name, force=True)


def unlabelled_copy(name: str) -> None:
    """`name`: the runner image with an empty runtime label, as images built before runtimes."""
    subprocess.run(
        ["docker", "build", "-q", "--label", f"{RUNTIME_LABEL}=", "-t", name, "-"],
        input=f"FROM {IMAGE}\n",
        text=True,
        capture_output=True,
        check=True,
        env={**os.environ, "DOCKER_BUILDKIT": "0"},
    )


def test_a_built_runtime_carries_its_labels_and_runs_as_tasks_run(
    engine: docker.DockerClient, built: tuple[str, list[str]]
) -> None:
    how, lines = built
    assert how in {"dockerfile", "debootstrap"}
    labels = engine.images.get(BASH).labels
    assert labels[RUNTIME_LABEL] == "bash"
    assert labels[VERSION_LABEL].startswith("5.")
    out = engine.containers.run(
        BASH,
        ["bash", "-c", 'echo "$BASH_VERSION $(id -u)"'],
        user="65534:65534",
        network_mode="none",
        read_only=True,
        remove=True,
    )
    assert out.decode().split() == [labels[VERSION_LABEL], "65534"]
    with pytest.raises(docker.errors.ImageNotFound):
        engine.images.get(candidate_name(BASH))  # no leftover
    assert all(line.startswith("[") and "s] " in line for line in lines)
    assert any("bash: 5." in line for line in lines)


def test_an_image_already_built_is_kept(built: tuple[str, list[str]]) -> None:
    lines: list[str] = []
    with BuildCache(progress=lines.append) as cache:
        assert build_runtime_image(BY_NAME["bash"], BASH, cache=cache) == "exists"
    assert "already exists" in lines[-1]


def test_an_image_of_another_runtime_is_not_relabelled(
    engine: docker.DockerClient, built: tuple[str, list[str]]
) -> None:
    before = engine.images.get(BASH).id
    with BuildCache(progress=lambda line: None) as cache, pytest.raises(ImageBuildError) as err:
        build_runtime_image(BY_NAME["node"], BASH, cache=cache)
    assert "holds runtime bash, not node" in str(err.value)
    assert engine.images.get(BASH).id == before


def test_an_unlabelled_image_is_checked_then_labelled(
    engine: docker.DockerClient, built: tuple[str, list[str]]
) -> None:
    unlabelled_copy(DEFAULT)
    with BuildCache(progress=lambda line: None) as cache:
        assert build_runtime_image(BY_NAME["python"], DEFAULT, cache=cache) == "labelled"
    labels = engine.images.get(DEFAULT).labels
    assert labels[RUNTIME_LABEL] == "python"
    assert labels[VERSION_LABEL].startswith("Python 3.")

    findings = runtime_findings(DockerRuntime("doctor-test", DEFAULT).health().runtimes)
    assert findings[0].startswith("[ok] runtimes: python (Python 3.")
    assert "bash (5." in findings[0]
    assert findings[1] == "[warn] runtimes not installed: python-data, node, c, cpp, java"


def test_a_failed_check_leaves_the_image_as_it_was(engine: docker.DockerClient) -> None:
    name = f"taskyard-imagetest-{os.getpid()}-node:1"
    unlabelled_copy(name)  # no node in it
    try:
        before = engine.images.get(name).id
        with BuildCache(progress=lambda line: None) as cache, pytest.raises(ImageBuildError) as err:
            build_runtime_image(BY_NAME["node"], name, cache=cache)
        assert "the node image failed its check" in str(err.value)
        assert engine.images.get(name).id == before
        assert engine.images.get(name).labels[RUNTIME_LABEL] == ""
    finally:
        engine.images.remove(name, force=True)


def test_the_dockerfile_route_installs_a_runtime(engine: docker.DockerClient) -> None:
    """The Dockerfile with node's build arguments, from the local runner image instead of
    python:3.12-slim (no registry here), gives an image that passes node's check."""
    name = f"taskyard-imagetest-{os.getpid()}-dockerfile:1"
    argv = dockerfile_argv("docker", name, RUNNER_DIR, BY_NAME["node"])
    argv[2:2] = ["--build-arg", f"BASE={IMAGE}"]
    try:
        subprocess.run(argv, capture_output=True, check=True, timeout=600)
        facts = check_image("docker", name, BY_NAME["node"])
        assert facts.version.startswith("v")
    finally:
        with contextlib.suppress(docker.errors.ImageNotFound):
            engine.images.remove(name, force=True)
