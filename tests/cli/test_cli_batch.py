"""`taskyard batch submit | get | cancel`: against the real API served in a thread over a real
SQLite file, with a stand-in controller that moves each task to its end as the real one would
(`controller.status.move`), and against fake servers for what the verbs print and refuse."""

import json
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cli_support import run_cli
from sqlmodel import col, select

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "api"))

from live_server import serving

from controller.status import move
from models.clock import utcnow
from models.database import Database, open_database
from models.phases import Phase, Reason
from models.settings import Settings
from models.tables import Task


@pytest.fixture(autouse=True)
def _no_stray_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TASKYARD_SERVER", "TASKYARD_TOKEN", "TASKYARD_ADMIN_TOKEN", "TASKYARD_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)


def run_to_end(database: Database, task_id: str, code: str) -> None:
    """What the controller records for a task whose code is `print(...)`, or `fail`."""
    failed = code == "fail"
    with database.write() as session:
        move(
            session,
            task_id=task_id,
            from_phase=Phase.PENDING,
            at_attempt=1,
            to_phase=Phase.RUNNING,
            reason=Reason.STARTED,
            message="started",
            now=utcnow(),
        )
    with database.write() as session:
        move(
            session,
            task_id=task_id,
            from_phase=Phase.RUNNING,
            at_attempt=1,
            to_phase=Phase.FAILED if failed else Phase.SUCCEEDED,
            reason=Reason.NON_ZERO_EXIT if failed else Reason.COMPLETED,
            message="exited 1" if failed else "exited 0",
            now=utcnow(),
            exit_code=1 if failed else 0,
            stdout="" if failed else code.removeprefix("print(").removesuffix(")") + "\n",
            stderr="NameError\n" if failed else "",
        )


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """A live API whose tasks a stand-in controller runs to their end as they come."""
    database = open_database("sqlite:///" + str(tmp_path / "t.db"))
    stop = threading.Event()

    def controller() -> None:
        while not stop.wait(0.02):
            with database.read() as session:
                pending = list(
                    session.exec(select(Task.id, Task.code).where(col(Task.phase) == "Pending"))
                )
            for task_id, code in pending:
                run_to_end(database, task_id, code)

    thread = threading.Thread(target=controller, daemon=True)
    with serving(Settings(data_dir=tmp_path, watch_heartbeat_seconds=0.2), database) as url:
        thread.start()
        try:
            yield url
        finally:
            stop.set()
            thread.join(10)
    database.dispose()


def write_lines(path: Path, *tasks: Any) -> Path:
    path.write_text("".join((t if isinstance(t, str) else json.dumps(t)) + "\n" for t in tasks))
    return path


def test_a_batch_is_submitted_waited_for_and_its_results_written_in_input_order(
    server: str, tmp_path: Path
) -> None:
    codes = ["print(1)", "print(2)", "fail", "print(4)"]
    jsonl = write_lines(
        tmp_path / "tasks.jsonl",
        *({"code": code, "resources": {"ram": "64MB"}} for code in codes[:2]),
        "",  # a blank line is skipped
        *({"code": code} for code in codes[2:]),
    )
    out = tmp_path / "results.jsonl"

    result = run_cli(["batch", "submit", str(jsonl), "--out", str(out), "--server", server])

    assert result.code == 1, result.err  # one task did not succeed
    assert "read 4 tasks" in result.err
    assert "4/4 done (Failed 1, Succeeded 3)" in result.err
    assert "NonZeroExit" in result.err
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["index"] for line in lines] == [0, 1, 2, 3]
    assert [line["phase"] for line in lines] == ["Succeeded", "Succeeded", "Failed", "Succeeded"]
    assert [line["stdout"] for line in lines] == ["1\n", "2\n", "", "4\n"]
    assert [line["exit_code"] for line in lines] == [0, 0, 1, 0]
    assert lines[2]["reason"] == "NonZeroExit" and lines[2]["stderr"] == "NameError\n"
    with httpx.Client(base_url=server) as http:
        for line, code in zip(lines, codes, strict=True):
            task = http.get(f"/tasks/{line['id']}").json()
            assert task["spec"]["code"] == code
        batch_id = task["batch_id"]
        assert http.get(f"/batches/{batch_id}").json()["done"] == 4

    shown = run_cli(["batch", "get", batch_id, "--server", server])
    assert shown.code == 0
    assert "Done:             4/4" in shown.out
    assert "Phases:           Succeeded 3, Failed 1" in shown.out


def test_without_wait_the_batch_id_is_printed(server: str, tmp_path: Path) -> None:
    jsonl = write_lines(tmp_path / "t.jsonl", {"code": "print(1)"})

    named = run_cli(["batch", "submit", str(jsonl), "-o", "name", "--server", server])

    assert named.code == 0, named.err
    assert named.out.startswith("batch/") and len(named.out.strip()) == len("batch/") + 32


@pytest.mark.parametrize(
    ("lines", "says"),
    [
        pytest.param(['{"code": "print(1)"}', "{not json"], "t.jsonl:2: not JSON", id="not-json"),
        pytest.param(['["print(1)"]'], "t.jsonl:1: a task body must be", id="not-an-object"),
        pytest.param([""], "no tasks", id="empty"),
        pytest.param(['{"code": "1"}'] * 1001, "at most 1000", id="too-many"),
    ],
)
def test_a_file_that_is_not_task_bodies_is_a_usage_error(
    tmp_path: Path, lines: list[str], says: str
) -> None:
    jsonl = write_lines(tmp_path / "t.jsonl", *lines)

    def no_server(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"nothing should be sent: {request.url}")

    result = run_cli(["batch", "submit", str(jsonl)], no_server)

    assert result.code == 2
    assert says in result.err


def test_a_refused_batch_names_the_item_and_field(tmp_path: Path) -> None:
    jsonl = write_lines(tmp_path / "t.jsonl", {"code": "1"}, {"code": "2"})
    detail = [{"loc": ["body", "tasks", 1, "resources", "cpu"], "msg": "bad cpu", "type": "x"}]

    result = run_cli(
        ["batch", "submit", str(jsonl), "--wait"],
        lambda _request: httpx.Response(422, json={"detail": detail}),
    )

    assert result.code == 1
    assert "tasks.1.resources.cpu: bad cpu" in result.err


def test_cancel_says_how_many_tasks_were_not_finished() -> None:
    summary = {
        "id": "b1",
        "created_at": "2026-11-27T22:00:00Z",
        "count": 5,
        "done": 2,
        "phases": {"Pending": 3, "Succeeded": 2},
        "cancel_requested": 3,
    }
    sent: list[tuple[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append((request.method, request.url.path))
        return httpx.Response(202, json=summary)

    result = run_cli(["batch", "cancel", "b1"], handler)

    assert result.code == 0
    assert sent == [("DELETE", "/batches/b1")]
    assert result.out == "batch/b1 cancellation requested (3 of 5 tasks not finished yet)\n"
    as_json = run_cli(["batch", "cancel", "b1", "-o", "json"], handler)
    assert json.loads(as_json.out) == summary
