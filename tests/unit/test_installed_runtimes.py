"""Which runtimes the engine's images hold, read from their labels, and the work area's exec
flag for compiled runtimes."""

from typing import Any

import pytest

from controller.container_config import host_settings
from controller.runtime import ContainerSpec
from controller.runtime_images import installed_runtimes, with_default
from models.runtimes import PACKAGES_LABEL, RUNTIME_LABEL, VERSION_LABEL

DEFAULT = "taskyard-runner:1"


def labels(runtime: str, version: str = "v1", packages: str | None = None) -> dict[str, str]:
    found = {RUNTIME_LABEL: runtime, VERSION_LABEL: version}
    if packages is not None:
        found[PACKAGES_LABEL] = packages
    return found


@pytest.mark.parametrize(
    ("images", "expected"),
    [
        ([], {}),
        (
            [(["taskyard-runner:1"], labels("python", "Python 3.11.2"))],
            {"python": {"image": DEFAULT, "version": "Python 3.11.2", "packages": {}}},
        ),
        (
            [(["taskyard-runner-node:1"], labels("node", "v18.19.0"))],
            {"node": {"image": "taskyard-runner-node:1", "version": "v18.19.0", "packages": {}}},
        ),
        ([(["other-runner-node:1"], labels("node"))], {}),
        ([(["taskyard-runner-node:2"], labels("node"))], {}),
        ([(["taskyard-runner-cobol:1"], labels("cobol"))], {}),
        ([(["taskyard-runner-node:1"], labels("python"))], {}),
        (
            [(["taskyard-runner-python-data:1"], labels("python-data", "3", '{"numpy": "1.24"}'))],
            {
                "python-data": {
                    "image": "taskyard-runner-python-data:1",
                    "version": "3",
                    "packages": {"numpy": "1.24"},
                }
            },
        ),
        (
            [(["taskyard-runner-python-data:1"], labels("python-data", "3", "[not json"))],
            {
                "python-data": {
                    "image": "taskyard-runner-python-data:1",
                    "version": "3",
                    "packages": {},
                }
            },
        ),
        (
            [(["taskyard-runner-bash:1"], labels("bash", "x" * 5000))],
            {"bash": {"image": "taskyard-runner-bash:1", "version": None, "packages": {}}},
        ),
    ],
    ids=[
        "none",
        "python",
        "node",
        "another-instances-name",
        "another-tag",
        "unknown-runtime",
        "label-and-name-disagree",
        "packages",
        "packages-not-json",
        "version-too-long",
    ],
)
def test_installed_runtimes(images: list[Any], expected: dict[str, Any]) -> None:
    assert installed_runtimes(images, DEFAULT) == expected


def test_a_default_image_without_labels_still_runs_python() -> None:
    assert with_default({}, DEFAULT)["python"] == {
        "image": DEFAULT,
        "version": None,
        "packages": {},
    }
    found = {"python": {"image": DEFAULT, "version": "3", "packages": {}}}
    assert with_default(found, DEFAULT) == found


def _spec(exec_work: bool) -> ContainerSpec:
    return ContainerSpec(
        name="n",
        labels={},
        image=DEFAULT,
        cpus=(0,),
        all_cpus=(0,),
        cpu_quota=1.0,
        gpus=(),
        ram=64 << 20,
        storage=64 << 20,
        pids_limit=64,
        nofile_limit=64,
        payload=b"",
        log_limit=1 << 20,
        exec_work=exec_work,
    )


@pytest.mark.parametrize(("exec_work", "flag"), [(False, "noexec"), (True, "exec")])
def test_the_work_area_allows_exec_only_for_compiled_runtimes(exec_work: bool, flag: str) -> None:
    options = host_settings(_spec(exec_work), seccomp=None)["tmpfs"]["/work"].split(",")
    assert flag in options and ("exec" in options) is exec_work
    assert "nosuid" in options and "nodev" in options
