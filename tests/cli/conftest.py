"""Fixtures for the CLI tests.

Unit tests run the verbs in-process against `httpx.MockTransport` handlers
(`cli_support.run_cli`). End-to-end tests (files named `*_e2e.py`, marked `docker`) run the real
`taskyard` command as a subprocess against a real server process on the real Docker engine,
started by `tests/e2e/harness.py`'s `Server`; like tests/e2e they fail, never skip, without an
engine.
"""

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))

from cli_support import stop
from harness import Server, require_engine

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        path = Path(str(item.fspath))
        if path.parent == HERE and path.stem.endswith("_e2e"):
            item.add_marker(pytest.mark.docker)


@pytest.fixture(scope="session")
def engine() -> docker.DockerClient:
    return require_engine()


@pytest.fixture(scope="session")
def cli_server(
    engine: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    running = Server(tmp_path_factory.mktemp("cli-serve")).start()
    yield running
    stop(running, engine)


@pytest.fixture
def fresh_dir(tmp_path: Path) -> Path:
    return tmp_path / f"instance-{uuid.uuid4().hex[:8]}"
