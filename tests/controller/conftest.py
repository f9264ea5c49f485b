"""The `world` fixture of the controller tests (`fake_world.World`), over each store that
`database_url` gives."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_world import HOST, OWNER, Clock, World
from fastapi.testclient import TestClient

import controller.observe
from api.app import create_app
from controller.fake_runtime import FakeRuntime
from controller.loop import Reconciler
from models.database import open_database
from models.settings import Settings


@pytest.fixture
def world(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    monkeypatch.setattr(controller.observe, "discover_capacity", lambda *_a, **_k: HOST)
    settings = Settings(
        data_dir=tmp_path,
        # The fake engine has no supervisor that ends a code at its timeout: the controller's
        # kill at the deadline does.
        supervisor_deadline_grace_seconds=0,
    )
    db = open_database(database_url)
    fake = FakeRuntime()
    clock = Clock()
    reconciler = Reconciler(
        settings, db, fake, owner=OWNER, gpu_probe=lambda: ([], "no gpus"), clock=clock
    )
    with TestClient(create_app(settings, db), base_url="http://127.0.0.1") as client:
        yield World(settings, db, client, fake, clock, reconciler)
    db.dispose()
