"""`taskyard admin ...` in-process: where the admin token comes from, what is sent, how
capacity and stuck tasks are shown, and how auth failures read."""

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from cli_support import make_task, run_cli

from taskyard.commands.admin import capacity_text

CAPACITY = {
    "cpu": {"allocatable": 4, "allocated": 3, "free": 1, "ids": [0, 1, 2, 3]},
    "gpu": {"allocatable": 0, "allocated": 0, "free": 0, "ids": [], "names": []},
    "ram": {
        "allocatable": 8 * 1024**3,
        "allocated": 768 * 1024**2,
        "free": 8 * 1024**3 - 768 * 1024**2,
    },
    "storage": {"allocatable": 50 * 1024**3, "allocated": 0, "free": 50 * 1024**3},
    "holders": {"cpus": {"10": ["t-b"], "2": "t-a", "3": ["t-a"]}, "gpus": {}},
    "reported_at": "2026-11-27T22:00:00Z",
}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("TASKYARD_SERVER", "TASKYARD_TOKEN", "TASKYARD_ADMIN_TOKEN", "TASKYARD_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))


def answering(status: int, body: Any, seen: list[httpx.Request]) -> Any:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, json=body)

    return handler


def _token_file(directory: Path, token: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "admin-token").write_text(token + "\n")
    return directory


@pytest.mark.parametrize("source", ["flag", "env", "data-dir-flag", "data-dir-env", "xdg"])
def test_the_admin_token_is_found_where_the_service_keeps_it(
    source: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    argv = ["admin", "capacity"]
    if source == "flag":
        argv += ["--token", "secret"]
    elif source == "env":
        monkeypatch.setenv("TASKYARD_ADMIN_TOKEN", "secret")
    elif source == "data-dir-flag":
        argv += ["--data-dir", str(_token_file(tmp_path / "dd", "secret"))]
    elif source == "data-dir-env":
        monkeypatch.setenv("TASKYARD_DATA_DIR", str(_token_file(tmp_path / "de", "secret")))
    else:  # the service's default data dir under $XDG_DATA_HOME
        _token_file(tmp_path / "xdg" / "taskyard", "secret")
    seen: list[httpx.Request] = []
    result = run_cli(argv, answering(200, CAPACITY, seen))
    assert result.code == 0, result.err
    assert seen[0].headers["authorization"] == "Bearer secret"


def test_the_flag_wins_over_the_environment_and_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TASKYARD_ADMIN_TOKEN", "env")
    seen: list[httpx.Request] = []
    run_cli(
        [
            "admin",
            "stuck",
            "--token",
            "flag",
            "--data-dir",
            str(_token_file(tmp_path / "d", "file")),
        ],
        answering(200, {"items": []}, seen),
    )
    assert seen[0].headers["authorization"] == "Bearer flag"


def test_no_token_anywhere_is_a_clear_error_before_any_request(tmp_path: Path) -> None:
    seen: list[httpx.Request] = []
    result = run_cli(
        ["admin", "capacity", "--data-dir", str(tmp_path / "none")], answering(200, CAPACITY, seen)
    )
    assert result.code == 1
    assert seen == []
    assert result.err.startswith("error: no admin token: pass --token, set $TASKYARD_ADMIN_TOKEN")
    assert str(tmp_path / "none" / "admin-token") in result.err


@pytest.mark.parametrize(
    ("status", "detail"),
    [
        (401, "admin token required: send Authorization: Bearer <token>"),
        (403, "this token is not the admin token"),
    ],
)
def test_auth_failures_say_where_the_token_came_from(status: int, detail: str) -> None:
    result = run_cli(
        ["admin", "capacity", "--token", "x"], answering(status, {"detail": detail}, [])
    )
    assert result.code == 1
    assert result.err.startswith(
        f"error: {detail} (HTTP {status}; the admin token comes from "
        "--token, $TASKYARD_ADMIN_TOKEN or "
    )


def test_capacity_table_and_holders() -> None:
    text = capacity_text(CAPACITY)
    resources, holders, rest = text.split("\n\n")
    rows = [line.split() for line in resources.splitlines()]
    assert rows == [
        ["RESOURCE", "ALLOCATABLE", "ALLOCATED", "FREE"],
        ["CPU", "4", "3", "1"],
        ["GPU", "0", "0", "0"],
        ["RAM", "8GB", "768MB", "7.2GB"],
        ["STORAGE", "50GB", "0B", "50GB"],
    ]
    assert [line.split() for line in holders.splitlines()] == [
        ["SLOT", "TASK"],
        ["cpu", "2", "t-a"],
        ["cpu", "3", "t-a"],
        ["cpu", "10", "t-b"],
    ]
    assert rest == 'reported_at: "2026-11-27T22:00:00Z"'


def test_capacity_of_an_unknown_shape_is_shown_as_json() -> None:
    text = capacity_text({"cpu": {"cores": 4}, "holders": ["odd"]})
    assert text.splitlines() == ['cpu: {"cores": 4}', 'holders: ["odd"]']


def test_capacity_json() -> None:
    result = run_cli(
        ["admin", "capacity", "--token", "t", "-o", "json"], answering(200, CAPACITY, [])
    )
    assert json.loads(result.out) == CAPACITY


def test_stuck_table() -> None:
    body = {
        "items": [
            {
                "task_id": "abc",
                "phase": "Scheduled",
                "why": "Scheduled for 40 s but its container never appeared",
                "since": "2026-11-27T22:00:00Z",
            }
        ],
        "controller": {"ok": True},
    }
    seen: list[httpx.Request] = []
    result = run_cli(["admin", "stuck", "--token", "t"], answering(200, body, seen))
    assert result.code == 0
    assert seen[0].url.path == "/admin/tasks/stuck"
    header, row = result.out.splitlines()
    assert header.split() == ["TASK", "PHASE", "FOR", "WHY"]
    assert row.split()[:2] == ["abc", "Scheduled"]
    assert row.endswith("Scheduled for 40 s but its container never appeared")
    assert 'controller: {"ok": true}' in result.err


def test_no_stuck_tasks() -> None:
    result = run_cli(["admin", "stuck", "--token", "t"], answering(200, {"items": []}, []))
    assert (result.code, result.out, result.err) == (0, "", "No stuck tasks.\n")


@pytest.mark.parametrize(("argv", "to"), [([], "Pending"), (["--to", "Failed"], "Failed")])
def test_reset_posts_the_target_phase(argv: list[str], to: str) -> None:
    seen: list[httpx.Request] = []
    task = make_task("abc", "Running", reason="Started", attempt=1)
    result = run_cli(["admin", "reset", "abc", "--token", "t", *argv], answering(200, task, seen))
    assert result.code == 0
    # The attempt it is at now first: the reset is for that attempt only.
    assert (seen[0].method, seen[0].url.path) == ("GET", "/tasks/abc")
    assert (seen[1].method, seen[1].url.path) == ("POST", "/admin/tasks/abc/reset")
    assert json.loads(seen[1].content) == {"to": to, "attempt": 1}
    assert result.out == f"task/abc reset to {to} requested (now Running, attempt 1)\n"


def test_reset_with_an_explicit_attempt_asks_nothing_first() -> None:
    seen: list[httpx.Request] = []
    task = make_task("abc", "Running", reason="Started", attempt=3)
    result = run_cli(
        ["admin", "reset", "abc", "--token", "t", "--attempt", "3"], answering(200, task, seen)
    )
    assert result.code == 0
    assert [(r.method, r.url.path) for r in seen] == [("POST", "/admin/tasks/abc/reset")]
    assert json.loads(seen[0].content) == {"to": "Pending", "attempt": 3}


def test_reset_conflict_exits_1_with_the_reason() -> None:
    result = run_cli(
        ["admin", "reset", "abc", "--token", "t", "--to", "Failed"],
        answering(
            409,
            {"detail": "the task already ended (Succeeded); only a requeue (to Pending) applies"},
            [],
        ),
    )
    assert result.code == 1
    assert result.err == (
        "error: the task already ended (Succeeded); only a requeue (to Pending) applies\n"
    )
