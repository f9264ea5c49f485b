"""The controller's log lines about one task carry its id (`task_id`), so that JSON logs can be
filtered by task; read through the service's JSON formatter."""

import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_world import HOST, OWNER, Clock, World, running
from fastapi.testclient import TestClient

import controller.observe
from api.app import create_app
from controller.errors import RuntimeUnavailable
from controller.fake_runtime import FakeRuntime
from controller.loop import Reconciler
from models.database import open_database
from models.settings import Settings
from taskyard.log_format import JsonFormatter

GRACE = 5


@pytest.fixture
def world(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    monkeypatch.setattr(controller.observe, "discover_capacity", lambda *_a, **_k: HOST)
    settings = Settings(
        data_dir=tmp_path,
        stuck_grace_seconds=GRACE,
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


def json_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    formatter = JsonFormatter()
    return [
        json.loads(formatter.format(record))
        for record in caplog.records
        if record.name == "taskyard.controller"
    ]


def test_a_retried_start_names_its_task(world: World, caplog: pytest.LogCaptureFixture) -> None:
    task_id = world.submit("1")
    world.fake.fail_next_run = RuntimeUnavailable("engine hiccup")
    with caplog.at_level(logging.WARNING, logger="taskyard.controller"):
        world.once()
    lines = [line for line in json_lines(caplog) if "retrying next pass" in line["message"]]
    assert lines, caplog.text
    assert all(line["task_id"] == task_id for line in lines)
    assert all(line["level"] == "WARNING" for line in lines)


def test_a_stuck_task_names_itself(
    world: World, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    task_id = running(world, timeout=5)

    def unreachable(name: str) -> Any:
        raise RuntimeUnavailable("engine cannot kill " + name)

    monkeypatch.setattr(world.fake, "kill", unreachable)
    world.clock.advance(6 + GRACE)
    with caplog.at_level(logging.WARNING, logger="taskyard.controller"):
        world.once()
    stuck = [line for line in json_lines(caplog) if "is stuck" in line["message"]]
    assert [line["task_id"] for line in stuck] == [task_id]


def test_an_exception_comes_whole_in_one_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.getLogger("t").makeRecord(
            "t", logging.ERROR, __file__, 1, "failed %s", ("x",), exc_info=sys.exc_info()
        )
    line = JsonFormatter().format(record)
    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed["message"] == "failed x"
    assert "ValueError: boom" in parsed["exc"]
