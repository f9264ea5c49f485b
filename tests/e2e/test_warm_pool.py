"""Warm containers on the real engine: each serves one task, with exactly the hardening of a
cold container, and none outlives the service."""

import signal
import time
from pathlib import Path
from typing import Any

import docker
import pytest
from harness import (
    GVISOR,
    IMAGE,
    Client,
    Server,
    owned_containers,
    task_body,
    task_containers,
    task_of,
)

from controller.docker_runtime import DockerRuntime
from controller.runtime import ContainerSpec

MB = 1 << 20


def warm_ones(engine: docker.DockerClient, owner: str) -> list[Any]:
    return [c for c in owned_containers(engine, owner) if task_of(c) is None]


def wait_for_warm(engine: docker.DockerClient, owner: str, count: int) -> list[Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        warm = [c for c in warm_ones(engine, owner) if c.status == "running"]
        if len(warm) >= count:
            return warm
        time.sleep(0.1)
    raise AssertionError(f"fewer than {count} warm containers after 30 s")


def spec(
    name: str, labels: dict[str, str], payload: bytes = b"", cpus: tuple[int, ...] = (0,)
) -> ContainerSpec:
    return ContainerSpec(
        name=name,
        labels=labels,
        image="taskyard-runner:1",
        cpus=cpus,
        all_cpus=(0,),
        cpu_quota=1.0,
        gpus=(),
        ram=96 * MB,
        storage=64 * MB,
        pids_limit=256,
        nofile_limit=1024,
        payload=payload,
        log_limit=3 * MB,
    )


@pytest.mark.parametrize("cpus", [(0,), ()], ids=["dedicated-core", "best-effort"])
def test_a_claimed_container_is_configured_exactly_as_a_cold_one(
    engine: docker.DockerClient,
    cpus: tuple[int, ...],
) -> None:
    from sandbox.supervisor import build_payload

    owner = f"warmtest{time.time_ns()}"
    runtime = DockerRuntime(owner, "taskyard-runner:1", warm_max_idle_seconds=60)
    payload = build_payload("import time; time.sleep(5)", None, MB)
    try:
        template = spec("", {}, cpus=())
        runtime.keep_warm([(template, 1)])
        wait_for_warm(engine, owner, 1)
        deadline = time.monotonic() + 10
        while runtime.warm_ready() < 1:
            assert time.monotonic() < deadline, "the pool never held its container"
            time.sleep(0.05)
        labels = {"taskyard.owner": owner}
        warm = runtime.run(spec(f"taskyard-{owner[:12]}-aaaa-1", labels, payload, cpus))
        runtime.keep_warm([])  # no refill to wait for: the next start is cold
        cold = runtime.run(spec(f"taskyard-{owner[:12]}-bbbb-1", labels, payload, cpus))
        warm_attrs = engine.api.inspect_container(warm.name)
        cold_attrs = engine.api.inspect_container(cold.name)
        assert "taskyard.warm" in warm_attrs["Config"]["Labels"]  # it did come from the pool
        assert "taskyard.warm" not in cold_attrs["Config"]["Labels"]

        differ = {
            key
            for key in cold_attrs["HostConfig"]
            if warm_attrs["HostConfig"].get(key) != cold_attrs["HostConfig"][key]
        }
        assert differ == set(), {
            k: (warm_attrs["HostConfig"][k], cold_attrs["HostConfig"][k]) for k in differ
        }
        for key in (
            "User",
            "Env",
            "Image",
            "WorkingDir",
            "Entrypoint",
            "NetworkDisabled",
            "OpenStdin",
            "StdinOnce",
        ):
            assert warm_attrs["Config"].get(key) == cold_attrs["Config"].get(key), key
        # Only the supervisor's wait for its code differs (the pool's is longer).
        assert warm_attrs["Config"]["Cmd"][:-1] == cold_attrs["Config"]["Cmd"][:-1]
        assert warm_attrs["State"]["Status"] == "running"
    finally:
        runtime.close()
        for container in owned_containers(engine, owner):
            container.remove(force=True)


def test_tasks_run_in_warm_containers_one_task_each(
    engine: docker.DockerClient, fresh_dir: Path
) -> None:
    server = Server(
        fresh_dir, env={"TASKYARD_WARM_POOL_STORAGE": "64MB", "TASKYARD_WARM_POOL_SIZE": "2"}
    ).start()
    try:
        if GVISOR:
            no_warm_containers_under_gvisor(engine, server)
        else:
            warm_containers_serve_one_task_each(engine, server)
    finally:
        server.kill(signal.SIGTERM)
    # A clean stop removes the pool.
    assert owned_containers(engine, server.owner) == []


def warm_containers_serve_one_task_each(engine: docker.DockerClient, server: Server) -> None:
    """Each task claims a warm container fitted to it; claimed ones are never reused."""
    client = Client(server.url)
    pool_before = {c.name for c in wait_for_warm(engine, server.owner, 2)}
    # Idle in the pool for a while: its engine start time must not count against the
    # task's timeout.
    time.sleep(3)
    body = task_body("import os, time; time.sleep(1.5); print(os.getuid())", timeout=2)
    first = client.submit(body)
    client.wait_for(first["id"], phases={"Running"}, timeout=10)
    claimed = task_containers(engine, server.owner, first["id"])
    assert len(claimed) == 1
    assert claimed[0].labels.get("taskyard.warm") == "1"
    assert claimed[0].attrs["HostConfig"]["Memory"] == 128 * MB  # fitted to the task
    assert claimed[0].attrs["HostConfig"]["NanoCpus"] == 1_000_000_000
    done = client.wait_for(first["id"], timeout=20)
    assert done["status"]["phase"] == "Succeeded", done["status"]
    assert done["status"]["result"] == "65534\n"

    second = client.submit(task_body("print('again')"), wait=20)
    assert second["status"]["result"] == "again\n"
    # Never reused: the claimed containers are gone with their tasks, the pool refilled
    # with new ones.
    time.sleep(1)
    assert task_containers(engine, server.owner) == []
    pool_after = {c.name for c in wait_for_warm(engine, server.owner, 2)}
    assert len(pool_before - pool_after) >= 1


def no_warm_containers_under_gvisor(engine: docker.DockerClient, server: Server) -> None:
    """runsc cannot change a running container's limits, which a claim needs: the pool keeps
    nothing (rather than start containers it could never fit), and tasks start cold."""
    probe = engine.containers.run(
        IMAGE,
        ["sleep", "30"],
        runtime="runsc",
        detach=True,
        labels={"taskyard.owner": server.owner},
        network_mode="none",
    )
    try:
        with pytest.raises(docker.errors.APIError, match="runsc did not terminate successfully"):
            engine.api.update_container(probe.id, mem_limit=128 * MB, memswap_limit=128 * MB)
    finally:
        probe.remove(force=True)
    client = Client(server.url)
    time.sleep(3)  # the pool would have filled by now (wait_for_warm sees it within a second)
    assert warm_ones(engine, server.owner) == []
    done = client.submit(task_body("import os; print(os.getuid())", timeout=20), wait=30)
    assert done["status"]["phase"] == "Succeeded", done["status"]
    assert done["status"]["result"] == "65534\n"
    assert warm_ones(engine, server.owner) == []


def test_size_zero_keeps_no_warm_containers(engine: docker.DockerClient, fresh_dir: Path) -> None:
    server = Server(fresh_dir, env={"TASKYARD_WARM_POOL_SIZE": "0"}).start()
    try:
        client = Client(server.url)
        done = client.submit(task_body("print('cold')"), wait=20)
        assert done["status"]["result"] == "cold\n"
        time.sleep(1)
        assert warm_ones(engine, server.owner) == []
    finally:
        server.kill(signal.SIGTERM)
        for container in owned_containers(engine, server.owner):
            container.remove(force=True)
