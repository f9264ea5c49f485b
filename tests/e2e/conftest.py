"""End-to-end fixtures: the real Docker engine and real `taskyard` server processes.

These tests never skip: without a reachable engine and runner image they fail with the command
that fixes it (`deploy/setup-host.sh`). `pytest -m "not docker"` runs the rest alone.
"""

import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from harness import Client, Server, require_engine, served


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.docker)


@pytest.fixture(scope="session")
def engine() -> docker.DockerClient:
    return require_engine()


@pytest.fixture(scope="session")
def server(
    engine: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    with served(engine, Server(tmp_path_factory.mktemp("serve"))) as running:
        yield running


@pytest.fixture(scope="session")
def client(server: Server) -> Client:
    return Client(server.url)


@pytest.fixture
def fresh_dir(tmp_path: Path) -> Path:
    return tmp_path / f"instance-{uuid.uuid4().hex[:8]}"
