"""Every verb that takes a task id takes what `submit` and `list -o name` print (`task/<id>`)
and a unique prefix of the id of 8 characters or more (as the dashboard shows it), against a
fake server that knows three tasks, two of them sharing their first 8 characters."""

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from cli_support import make_task, run_cli

ALONE = "5f3a9c1e" + "0" * 24
TWIN_A = "7b2d4e6f" + "a" * 24
TWIN_B = "7b2d4e6f" + "b" * 24
TASKS = {task_id: make_task(task_id, "Running") for task_id in (ALONE, TWIN_A, TWIN_B)}


@pytest.fixture(autouse=True)
def _no_stray_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("TASKYARD_SERVER", "TASKYARD_TOKEN", "TASKYARD_ADMIN_TOKEN", "TASKYARD_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))


class FakeServer:
    """GET and DELETE /tasks/{id}, its logs, its admin reset, GET /tasks with `id_prefix`,
    and /watch of one task, as the API answers them; every request is kept."""

    def __init__(
        self, tasks: dict[str, Any] | None = None, *, knows_id_prefix: bool = True
    ) -> None:
        self.tasks = TASKS if tasks is None else tasks
        self.knows_id_prefix = knows_id_prefix
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        parts = request.url.path.strip("/").split("/")
        if parts == ["tasks"]:
            prefix = request.url.params.get("id_prefix") if self.knows_id_prefix else None
            items = [task for key, task in self.tasks.items() if key.startswith(prefix or "")]
            limit = int(request.url.params.get("limit", 50))
            next_cursor = "1" if len(items) > limit else None
            return httpx.Response(200, json={"items": items[:limit], "next_cursor": next_cursor})
        # /watch?task_id=, /tasks/{id}[/logs], /admin/tasks/{id}/reset
        task_id = request.url.params["task_id"] if parts == ["watch"] else parts[-1]
        if parts[-1] in ("logs", "reset"):
            task_id = parts[-2]
        if task_id not in self.tasks:
            return httpx.Response(404, json={"detail": f"task {task_id} not found"})
        if parts == ["watch"]:
            return httpx.Response(200, text=_end_of(task_id))
        if parts[-1] == "logs":
            return httpx.Response(200, text=_output_of(task_id))
        return httpx.Response(202 if request.method == "DELETE" else 200, json=self.tasks[task_id])

    def paths(self) -> list[str]:
        return [
            f"{r.method} {r.url.path}?{r.url.query.decode()}".rstrip("?") for r in self.requests
        ]


def _end_of(task_id: str) -> str:
    event = {
        "seq": 9,
        "task_id": task_id,
        "from_phase": "Running",
        "to_phase": "Succeeded",
        "reason": "Completed",
        "message": "exited with code 0",
        "at": "2026-11-27T22:00:01Z",
        "resource_version": 4,
    }
    return f"id: 9\nevent: transition\ndata: {json.dumps(event)}\n\n"


def _output_of(task_id: str) -> str:
    chunk = json.dumps({"seq": 1, "stream": "stdout", "text": f"from {task_id}\n"})
    return f"id: 1\nevent: output\ndata: {chunk}\n\n"


# Each verb that names a task: its arguments around the id, and what its output shows.
VERBS = [
    pytest.param(["get", "{}", "-o", "name"], "task/{}\n", id="get"),
    pytest.param(["cancel", "{}"], "task/{} cancellation requested\n", id="cancel"),
    pytest.param(["logs", "{}"], "from {}\n", id="logs"),
    pytest.param(["watch", "--task", "{}", "-o", "json"], '"task_id": "{}"', id="watch"),
    pytest.param(
        ["admin", "reset", "{}", "--token", "admin", "-o", "name"], "task/{}\n", id="admin-reset"
    ),
]


def _argv(template: list[str], given: str) -> list[str]:
    return [part.format(given) for part in template]


@pytest.mark.parametrize(("template", "shows"), VERBS)
@pytest.mark.parametrize(
    "given",
    [
        pytest.param(ALONE, id="the-id"),
        pytest.param(f"task/{ALONE}", id="task/<id>"),
        pytest.param(ALONE[:8], id="8-character-prefix"),
        pytest.param(f"task/{ALONE[:12]}", id="task/<prefix>"),
    ],
)
def test_a_verb_takes_the_id_task_slash_id_or_a_unique_prefix(
    template: list[str], shows: str, given: str
) -> None:
    server = FakeServer()
    result = run_cli(_argv(template, given), server)

    assert result.code == 0, result.err
    assert shows.format(ALONE) in result.out
    if "task/" in given:
        assert all("task/" not in r.url.path.removeprefix("/tasks/") for r in server.requests)


def test_a_whole_id_costs_one_request_and_a_prefix_two_more() -> None:
    whole, prefix = FakeServer(), FakeServer()
    run_cli(["get", ALONE], whole)
    run_cli(["get", ALONE[:8]], prefix)

    assert whole.paths() == [f"GET /tasks/{ALONE}"]
    assert prefix.paths() == [
        f"GET /tasks/{ALONE[:8]}",
        f"GET /tasks?limit=11&id_prefix={ALONE[:8]}",
        f"GET /tasks/{ALONE}",
    ]


@pytest.mark.parametrize(("template", "_shows"), VERBS)
def test_an_ambiguous_prefix_says_so_and_lists_the_candidates(
    template: list[str], _shows: str
) -> None:
    server = FakeServer()
    result = run_cli(_argv(template, TWIN_A[:8]), server)

    assert result.code == 1
    assert result.out == ""
    assert f"the id prefix {TWIN_A[:8]} is ambiguous" in result.err
    assert f"task/{TWIN_A}" in result.err and f"task/{TWIN_B}" in result.err
    # Nothing was done to either: the only change asked for named the prefix, and was a 404.
    changes = [r.url.path for r in server.requests if r.method in ("DELETE", "POST")]
    assert all(TWIN_A not in path and TWIN_B not in path for path in changes)


@pytest.mark.parametrize(("template", "_shows"), VERBS)
def test_an_unknown_prefix_is_not_found(template: list[str], _shows: str) -> None:
    result = run_cli(_argv(template, "0123abcd"), FakeServer())

    assert result.code == 1
    assert result.err.startswith("error: task 0123abcd not found")


def test_a_prefix_shorter_than_8_is_not_looked_up_and_says_why() -> None:
    server = FakeServer()
    result = run_cli(["get", ALONE[:7]], server)

    assert result.code == 1
    assert result.err == (
        f"error: task {ALONE[:7]} not found (an id prefix needs 8 characters or more)\n"
    )
    assert server.paths() == [f"GET /tasks/{ALONE[:7]}"]


def test_cancel_goes_on_past_an_ambiguous_prefix_and_exits_1() -> None:
    server = FakeServer()
    result = run_cli(["cancel", TWIN_A[:8], ALONE[:8]], server)

    assert result.code == 1
    assert result.out == f"task/{ALONE} cancellation requested\n"
    assert "is ambiguous" in result.err
    assert [r.url.path for r in server.requests if r.method == "DELETE"] == [
        f"/tasks/{TWIN_A[:8]}",
        f"/tasks/{ALONE[:8]}",
        f"/tasks/{ALONE}",
    ]


def test_a_server_without_id_prefix_still_resolves_from_its_listing() -> None:
    result = run_cli(["get", ALONE[:8], "-o", "name"], FakeServer(knows_id_prefix=False))

    assert (result.code, result.out) == (0, f"task/{ALONE}\n")


def test_more_candidates_than_shown_are_summed_up() -> None:
    many = {f"aaaaaaaa{n:024d}": make_task(f"aaaaaaaa{n:024d}") for n in range(12)}

    result = run_cli(["get", "aaaaaaaa"], FakeServer(many))

    assert result.code == 1
    lines = result.err.splitlines()
    assert sum(line.startswith("  task/") for line in lines) == 10
    assert lines[-1] == "  ... and more"
