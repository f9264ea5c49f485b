"""What deploy/ installs, checked without installing it: the systemd unit (with
`systemd-analyze verify`, since systemd is not PID 1 where the tests run), its environment
file, the service image's Dockerfile and compose file (parsed: no registry is reachable here to
build them), the daemon.json rewrite, and the split between what serving and testing install.
"""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from models.settings import Settings

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
UNIT = DEPLOY / "systemd" / "taskyard.service"
ENV_TEMPLATE = DEPLOY / "systemd" / "taskyard.env"
UNIT_DIRS = (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system"))


# --- the systemd unit ---------------------------------------------------------------------


def unit_entries(text: str) -> dict[str, dict[str, list[str]]]:
    """A unit file's sections and keys; a key given twice keeps both values, as systemd does."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def verify(unit_text: str, root: Path) -> subprocess.CompletedProcess[str]:
    """`systemd-analyze verify` of the unit installed into a scratch root: this host's unit
    directory (docker.service included), the unit, and a stand-in for its ExecStart."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail(
            "systemd-analyze is missing: install the systemd package "
            "(deploy/setup-host.sh --test does)"
        )
    host_units = next((d for d in UNIT_DIRS if (d / "docker.service").exists()), None)
    assert host_units is not None, "no docker.service on this host: is docker.io installed?"
    shutil.copytree(host_units, root / "usr/lib/systemd/system", symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    (root / "etc/systemd/system/taskyard.service").write_text(unit_text)
    executable = shlex.split(unit_entries(unit_text)["Service"]["ExecStart"][0])[0]
    stand_in = root / executable.lstrip("/")
    stand_in.parent.mkdir(parents=True, exist_ok=True)
    stand_in.write_text("#!/bin/sh\n")
    stand_in.chmod(0o755)
    return subprocess.run(
        [analyze, "verify", f"--root={root}", "/etc/systemd/system/taskyard.service"],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    checked = verify(UNIT.read_text(), tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout + checked.stderr == ""  # not even a warning


@pytest.mark.parametrize(
    ("old", "new", "complaint"),
    [
        ("Restart=on-failure", "Restart=sometimes", "Failed to parse"),
        ("StateDirectory=taskyard", "StateDirectry=taskyard", "Unknown key"),
        ("Type=exec", "Type=exec\nExecStartPre=relative/taskyard", "bad unit file setting"),
    ],
    ids=["bad-value", "misspelt-key", "relative-command"],
)
def test_verify_catches_a_broken_unit(tmp_path: Path, old: str, new: str, complaint: str) -> None:
    """The check above can fail: each of these mistakes is reported."""
    text = UNIT.read_text()
    assert old in text
    checked = verify(text.replace(old, new, 1), tmp_path)
    assert complaint.lower() in (checked.stdout + checked.stderr).lower()


def test_the_unit_runs_taskyard_as_a_service_should() -> None:
    entries = unit_entries(UNIT.read_text())
    unit, service = entries["Unit"], entries["Service"]
    assert "docker.service" in " ".join(unit["After"])
    assert "docker.service" in " ".join(unit.get("Wants", []) + unit.get("Requires", []))
    assert service["Restart"] == ["on-failure"]
    assert service["EnvironmentFile"] == ["/etc/taskyard/taskyard.env"]
    assert service["User"] == ["taskyard"]
    assert "docker" in service["SupplementaryGroups"][0].split()
    assert service["StandardError"] == ["journal"]
    assert entries["Install"]["WantedBy"] == ["multi-user.target"]
    # The installer puts the program where the unit runs it, and the settings where it reads them.
    installer = (DEPLOY / "install-service.sh").read_text()
    venv = re.search(r"^PREFIX=(\S+)", installer, re.M)
    assert venv and service["ExecStart"][0].startswith(f"{venv[1]}/venv/bin/taskyard serve")
    assert "ENV_FILE=/etc/taskyard/taskyard.env" in installer
    assert "systemctl enable" in installer


def test_the_environment_template_names_only_real_settings() -> None:
    """Every TASKYARD_ variable in the template, set or commented out, is a setting taskyard
    reads, and the values set there are valid."""
    lines = ENV_TEMPLATE.read_text().splitlines()
    names = re.findall(r"^#? ?TASKYARD_(\w+)=", "\n".join(lines), re.M)
    assert names
    fields = set(Settings.model_fields)
    assert [n for n in names if n.lower() not in fields] == []
    values = dict(line.split("=", 1) for line in lines if line.startswith("TASKYARD_"))
    settings = Settings(**{k.removeprefix("TASKYARD_").lower(): v for k, v in values.items()})
    assert settings.data_dir == Path("/var/lib/taskyard")
    # The data dir is the one systemd creates and lets the service write (ProtectSystem=strict).
    service = unit_entries(UNIT.read_text())["Service"]
    assert service["StateDirectory"] == ["taskyard"]


# --- the service image --------------------------------------------------------------------


def instructions(dockerfile: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs: continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", dockerfile)
    result = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


def stages(steps: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for step in steps:
        if step[0] == "FROM":
            found.append([])
        found[-1].append(step)
    return found


@pytest.fixture(scope="module")
def image_steps() -> list[list[tuple[str, str]]]:
    return stages(instructions((DEPLOY / "Dockerfile").read_text()))


def test_the_image_installs_taskyard_from_a_wheel_not_editable(
    image_steps: list[list[tuple[str, str]]],
) -> None:
    runs = [args for stage in image_steps for word, args in stage if word == "RUN"]
    assert not any(re.search(r"pip install[^&]*(\s-e\s|--editable)", run) for run in runs)
    final = image_steps[-1]
    assert not any(word == "COPY" and args.startswith(". ") for word, args in final), (
        "the final image must not hold the source tree"
    )
    assert any("--no-deps" in args and ".whl" in args for word, args in final if word == "RUN")


def test_the_image_installs_dependencies_in_a_layer_before_the_code(
    image_steps: list[list[tuple[str, str]]],
) -> None:
    final = image_steps[-1]
    deps = next(i for i, (w, a) in enumerate(final) if w == "RUN" and "-r " in a)
    code = next(i for i, (w, a) in enumerate(final) if w == "COPY" and "wheel" in a)
    # Only pyproject.toml is copied in before the dependencies are installed.
    copies_before = [a for w, a in final[:deps] if w == "COPY" and "--from=docker" not in a]
    assert copies_before == ["pyproject.toml /tmp/pyproject.toml"]
    assert deps < code


def test_the_image_checks_its_health_on_healthz(
    image_steps: list[list[tuple[str, str]]],
) -> None:
    (check,) = [args for word, args in image_steps[-1] if word == "HEALTHCHECK"]
    command = json.loads(check.split("CMD", 1)[1])
    assert command == ["python", "-m", "taskyard.healthcheck"]
    (cmd,) = [args for word, args in image_steps[-1] if word == "CMD"]
    assert json.loads(cmd) == ["taskyard", "serve"]


def test_compose_runs_the_image_with_its_health_check() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    serving = compose["services"]["taskyard"]
    built = compose["services"]["runner-image"]
    assert built["build"]["dockerfile"] == "deploy/Dockerfile"
    assert serving["image"] == built["image"]
    assert "healthcheck" not in serving  # the image's own
    assert serving["network_mode"] == "host"
    assert "/var/run/docker.sock:/var/run/docker.sock" in serving["volumes"]


# --- daemon.json --------------------------------------------------------------------------


def daemon_json(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(DEPLOY / "daemon_json.py"), "--path", str(path), *args],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_daemon_json_is_backed_up_then_rewritten_keeping_other_keys(tmp_path: Path) -> None:
    path = tmp_path / "daemon.json"
    path.write_text('{"debug": true, "live-restore": false}')
    planned = daemon_json(path, "--runsc", "/usr/bin/runsc", "--dry-run")
    assert planned.returncode == 0
    assert "live-restore: false -> true" in planned.stdout
    assert "runtimes.runsc" in planned.stdout
    assert json.loads(path.read_text()) == {"debug": True, "live-restore": False}  # untouched
    assert list(tmp_path.iterdir()) == [path]

    done = daemon_json(path, "--runsc", "/usr/bin/runsc")
    assert done.returncode == 0
    (backup,) = [p for p in tmp_path.iterdir() if p != path]
    assert backup.name.startswith("daemon.json.") and backup.name.endswith(".bak")
    assert f"saving the previous file as {backup}" in done.stdout
    assert json.loads(backup.read_text()) == {"debug": True, "live-restore": False}
    assert json.loads(path.read_text()) == {
        "debug": True,
        "live-restore": True,
        "runtimes": {"runsc": {"path": "/usr/bin/runsc", "runtimeArgs": ["--network=none"]}},
    }

    again = daemon_json(path, "--runsc", "/usr/bin/runsc")
    assert again.returncode == 1 and "unchanged" in again.stdout
    assert len(list(tmp_path.iterdir())) == 2  # no second backup of an unchanged file


def test_a_broken_daemon_json_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "daemon.json"
    path.write_text("{not json")
    done = daemon_json(path)
    assert done.returncode == 2 and "fix or move it" in done.stdout
    assert path.read_text() == "{not json"


# --- what serving installs, and what only testing does -----------------------------------


@pytest.fixture(scope="module")
def plans() -> Iterator[dict[str, str]]:
    """deploy/setup-host.sh --dry-run, for serving and for tests."""

    def plan(*args: str) -> str:
        done = subprocess.run(
            ["bash", str(DEPLOY / "setup-host.sh"), "--dry-run", *args],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "TASKYARD_VENV": str(REPO / ".venv")},
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    yield {"serve": plan(), "test": plan("--test")}


TEST_TOOLS = ("chromium", "fonts-liberation", "wrk", "systemd", "[test]")


def test_serving_installs_no_test_tool(plans: dict[str, str]) -> None:
    packages = re.search(r"it needs ([^:)]+)", plans["serve"])
    assert packages, plans["serve"]
    assert "docker.io" in packages[1].split()
    assert [tool for tool in TEST_TOOLS if tool in packages[1].split()] == []
    assert "[test]" not in plans["serve"]


def test_the_test_setup_adds_the_test_tools(plans: dict[str, str]) -> None:
    packages = re.search(r"it needs ([^:)]+)", plans["test"])
    assert packages, plans["test"]
    assert {"chromium", "fonts-liberation", "wrk", "systemd"} <= set(packages[1].split())


def test_the_plan_names_daemon_json_and_changes_nothing(plans: dict[str, str]) -> None:
    for plan in plans.values():
        assert "/etc/docker/daemon.json" in plan
        assert plan.rstrip().endswith("dry run: nothing was changed")
