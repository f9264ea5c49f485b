"""`DockerRuntime.list_owned(settled=...)` on the real engine: a container whose code the
controller knows has ended (its supervisor reported) is described from the engine's list alone,
never inspected, because the engine holds a container's lock while it handles its exit, and an
inspect then waits for that. Every other container is still inspected for its exit record."""

import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import docker
import pytest
from harness import owned_containers

from controller.docker_runtime import DockerRuntime
from controller.runtime import ContainerSpec, ObservedContainer
from sandbox.supervisor import build_payload

MB = 1 << 20


@pytest.fixture
def runtime(engine: docker.DockerClient) -> Iterator[DockerRuntime]:
    owner = f"settled{time.time_ns()}"
    built = DockerRuntime(owner, "taskyard-runner:1", warm_max_idle_seconds=60)
    yield built
    built.close()
    for container in owned_containers(engine, owner):
        container.remove(force=True)


def start(runtime: DockerRuntime, task_id: str, code: str, *, warm: bool = False) -> str:
    owner = runtime._owner
    template = ContainerSpec(
        name="",
        labels={},
        image="taskyard-runner:1",
        cpus=(0,),
        all_cpus=(0,),
        cpu_quota=1.0,
        gpus=(),
        ram=96 * MB,
        storage=64 * MB,
        pids_limit=256,
        nofile_limit=1024,
        payload=b"",
        log_limit=3 * MB,
    )
    if warm:
        runtime.keep_warm([(template, 1)])
        deadline = time.monotonic() + 30
        while runtime.warm_ready() < 1:
            assert time.monotonic() < deadline, "the pool never held its container"
            time.sleep(0.05)
    name = f"taskyard-{owner[:12]}-{task_id}-1"
    labels = {"taskyard.owner": owner, "taskyard.task": task_id, "taskyard.attempt": "1"}
    runtime.run(replace(template, name=name, labels=labels, payload=build_payload(code, None, MB)))
    return name


def wait_exited(engine: docker.DockerClient, name: str) -> None:
    deadline = time.monotonic() + 30
    while engine.api.inspect_container(name)["State"]["Status"] != "exited":
        assert time.monotonic() < deadline, f"{name} never exited"
        time.sleep(0.05)


def listing(
    runtime: DockerRuntime, settled: set[str]
) -> tuple[dict[str, ObservedContainer], list[str]]:
    """What `list_owned` gives, by name, and which containers it inspected."""
    api = runtime._engine.client().api
    inspected: list[str] = []
    real = api.inspect_container

    def counted(container: Any) -> Any:
        attrs = real(container)
        inspected.append(attrs["Name"].lstrip("/"))
        return attrs

    api.inspect_container = counted
    try:
        observed = runtime.list_owned(settled=settled)
    finally:
        del api.inspect_container
    return {c.name: c for c in observed}, inspected


@pytest.mark.parametrize("warm", [False, True], ids=["cold", "claimed-warm"])
def test_a_settled_container_is_listed_without_an_inspect(
    engine: docker.DockerClient,
    runtime: DockerRuntime,
    warm: bool,
) -> None:
    name = start(runtime, "tsettled", "print('done')", warm=warm)
    wait_exited(engine, name)

    observed, inspected = listing(runtime, {name})

    assert inspected == []
    assert observed[name].state == "exited"
    assert (observed[name].task_id, observed[name].attempt) == ("tsettled", 1)
    assert observed[name].exit_code is None  # the exit record is what it spared


def test_a_container_not_settled_is_inspected_for_its_exit_record(
    engine: docker.DockerClient,
    runtime: DockerRuntime,
) -> None:
    settled = start(runtime, "tsettled", "print('done')")
    other = start(runtime, "tother", "raise SystemExit(3)")
    wait_exited(engine, settled)
    wait_exited(engine, other)

    observed, inspected = listing(runtime, {settled})

    assert inspected == [other]
    assert observed[other].state == "exited"
    assert observed[other].exit_code == 3
    assert (observed[other].task_id, observed[other].attempt) == ("tother", 1)
