"""`controller.engine_wire` against the real engine: the private docker-py parts it fences still
do the job (a warm container's limits updated with NanoCpus; code written through the attach's
socket, and its close ending the container's stdin), as does the public behaviour of docker-py
that `controller.container_config` leans on (StdinOnce set by detach=False)."""

import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import docker
import pytest

from controller import engine_wire
from controller.container_config import create_args
from controller.runtime import OWNER_LABEL, ContainerSpec

MB = 1 << 20
SPEC = ContainerSpec(
    name="",
    labels={},
    image="taskyard-runner:1",
    cpus=(0,),
    all_cpus=(0,),
    cpu_quota=0.5,
    gpus=(),
    ram=96 * MB,
    storage=16 * MB,
    pids_limit=64,
    nofile_limit=64,
    payload=b"",
    log_limit=MB,
)
COUNT_STDIN = "import sys; print(len(sys.stdin.buffer.read()))"


@pytest.fixture
def api(engine: docker.DockerClient) -> Any:
    return engine.api


def created(api: Any, command: str) -> str:
    name = f"taskyard-wire-{uuid.uuid4().hex[:12]}"
    spec = replace(SPEC, name=name, labels={OWNER_LABEL: "wire-test"})
    arguments = create_args(api, spec, seccomp=None, delivery_timeout=10)
    api.create_container(**{**arguments, "command": ["python3", "-c", command]})
    return name


@pytest.fixture
def names(api: Any) -> Iterator[list[str]]:
    made: list[str] = []
    yield made
    for name in made:
        api.remove_container(name, force=True)


def test_the_containers_stdin_closes_with_the_one_attach(api: Any, names: list[str]) -> None:
    name = created(api, COUNT_STDIN)
    names.append(name)
    assert api.inspect_container(name)["Config"]["StdinOnce"] is True
    api.start(name)

    raw, release = engine_wire.attach_stdin(api, name)
    raw.sendall(b"x" * 100_000)
    raw.close()
    release()

    assert api.wait(name, timeout=30)["StatusCode"] == 0
    assert api.logs(name, stdout=True, stderr=False) == b"100000\n"


def test_a_running_containers_limits_are_updated_with_nanocpus(api: Any, names: list[str]) -> None:
    name = created(api, "import sys; sys.stdin.read()")
    names.append(name)
    api.start(name)
    limits: dict[str, int | str] = {
        "CpusetCpus": "0",
        "NanoCpus": 250_000_000,
        "Memory": 64 * MB,
        "MemorySwap": 64 * MB,
        "CpuShares": 2,
    }

    engine_wire.update_limits(api, name, limits)

    host = api.inspect_container(name)["HostConfig"]
    assert {field: host[field] for field in limits} == limits


def test_an_update_of_a_gone_container_raises_the_sdks_not_found(api: Any) -> None:
    with pytest.raises(docker.errors.NotFound):
        engine_wire.update_limits(api, f"taskyard-wire-gone-{uuid.uuid4().hex}", {"Memory": MB})
