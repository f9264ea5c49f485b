"""What a person meets first: `--version`, the top-level help, phase names in any case, and an
empty snippet refused before anything is sent."""

import json
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from cli_support import make_task, run_cli
from harness import free_port

from taskyard.cli import build_parser


@pytest.fixture(autouse=True)
def _no_stray_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("TASKYARD_SERVER", "TASKYARD_TOKEN", "TASKYARD_ADMIN_TOKEN", "TASKYARD_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))


def cli(
    *argv: str, stdin: str = "", env: dict[str, str] | None = None
) -> "subprocess.CompletedProcess[str]":
    return subprocess.run(
        [sys.executable, "-m", "taskyard.cli", *argv],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_version_prints_the_installed_version() -> None:
    from importlib.metadata import version

    shown = cli("--version")

    assert shown.returncode == 0
    assert shown.stdout == f"taskyard {version('taskyard')}\n"


def test_the_help_lists_every_verb_and_names_no_python_module() -> None:
    shown = cli("--help")
    assert shown.returncode == 0
    verbs_action = next(action for action in build_parser()._actions if action.dest == "verb")
    verbs = list(verbs_action.choices)  # type: ignore[arg-type]
    assert {"serve", "doctor", "submit", "get", "list", "watch", "logs", "cancel", "admin"} <= set(
        verbs
    )
    description, listing = shown.stdout.split("positional arguments:")
    named = set(re.findall(r"[a-z]+", description))
    for verb in verbs:
        assert verb in named, verb  # named in the overview, by kind
        assert f"\n    {verb}" in listing, verb  # and listed with what it does
    assert "taskyard." not in shown.stdout and ".py" not in shown.stdout
    assert "--server" in description and "TASKYARD_SERVER" in description


@pytest.mark.parametrize("given", ["running", "RUNNING", "Running"])
def test_list_and_watch_take_a_phase_in_any_case(given: str) -> None:
    asked: list[str] = []

    def server(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.params["phase"])
        if request.url.path == "/tasks":
            return httpx.Response(200, json={"items": [make_task()], "next_cursor": None})
        return httpx.Response(401, json={"detail": "enough"})  # ends the watch

    assert run_cli(["list", "--phase", given], server).code == 0
    run_cli(["watch", "--phase", given], server)
    assert asked == ["Running", "Running"]


def test_an_unknown_phase_is_a_usage_error_listing_the_phases() -> None:
    result = cli("list", "--phase", "sleeping")

    assert result.returncode == 2
    assert "invalid choice: 'sleeping'" in result.stderr and "Running" in result.stderr


@pytest.mark.parametrize(
    ("argv", "stdin", "says"),
    [
        pytest.param(["--wait"], "", "the code from stdin is empty", id="empty-pipe"),
        pytest.param(["-", "--wait"], " \n\t\n", "the code from stdin is empty", id="blank-stdin"),
        pytest.param(["-c", "   "], "", "the code from -c is empty", id="blank-c"),
        pytest.param(["{empty}"], "", "the code from {empty} is empty", id="empty-file"),
    ],
)
def test_empty_code_is_refused_before_anything_is_sent(
    tmp_path: Path, argv: list[str], stdin: str, says: str
) -> None:
    empty = tmp_path / "empty.py"
    empty.write_text("")
    argv = [part.format(empty=empty) for part in argv]
    sent: list[httpx.Request] = []

    def server(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(201, json=make_task())

    result = run_cli(["submit", *argv], server, stdin=stdin)

    assert result.code == 2
    assert f"error: no code: {says.format(empty=empty)}" in result.err
    assert sent == []


def test_submit_wait_with_stdin_from_dev_null_is_refused(tmp_path: Path) -> None:
    """`taskyard submit --wait </dev/null` as a shell runs it: nothing is submitted (a server
    that existed would have made this exit 0 or 3, not 2)."""
    env = {
        "PATH": str(Path(sys.executable).parent),
        "TASKYARD_SERVER": f"http://127.0.0.1:{free_port()}",
        "XDG_DATA_HOME": str(tmp_path),
    }
    with open("/dev/null") as nothing:
        done = subprocess.run(
            [sys.executable, "-m", "taskyard.cli", "submit", "--wait"],
            stdin=nothing,
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )

    assert done.returncode == 2
    assert done.stderr.endswith("error: no code: the code from stdin is empty\n")


def test_code_that_is_only_a_comment_is_still_sent() -> None:
    bodies: list[dict[str, object]] = []

    def server(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(201, json=make_task())

    assert run_cli(["submit", "-c", "# nothing to do"], server).code == 0
    assert bodies[0]["code"] == "# nothing to do"
