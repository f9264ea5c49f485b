"""Fixtures for the Python client's tests.

Unit tests run `Client` and `AsyncClient` against `httpx.MockTransport` servers. End-to-end tests
(files named `*_e2e.py`, marked `docker`) run them against a real `taskyard serve` process on the
real Docker engine, started by `tests/e2e/harness.py`'s `Server`; like tests/e2e they fail,
never skip, without an engine.
"""

import sys
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))

from harness import Server, require_engine, served

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        path = Path(str(item.fspath))
        if path.parent == HERE and path.stem.endswith("_e2e"):
            item.add_marker(pytest.mark.docker)


@pytest.fixture(autouse=True)
def _no_stray_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TASKYARD_SERVER", "TASKYARD_TOKEN"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def engine() -> docker.DockerClient:
    return require_engine()


@pytest.fixture(scope="session")
def live_server(
    engine: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    with served(engine, Server(tmp_path_factory.mktemp("client-serve"))) as running:
        yield running
