"""How `taskyard image build` builds each runtime: the commands it runs and the labels it sets,
without running them (`tests/e2e/test_runtime_images.py` builds for real)."""

import json
from pathlib import Path

import pytest

from models.runtimes import (
    BY_NAME,
    PACKAGES_LABEL,
    RUNTIME_LABEL,
    RUNTIMES,
    VERSION_LABEL,
    Runtime,
)
from sandbox.imagebuild import (
    candidate_name,
    dockerfile_argv,
    dockerfile_build_args,
    label_argv,
)
from sandbox.imagecheck import (
    HELLO,
    ImageFacts,
    check_argv,
    first_line,
    hello_command,
    image_labels,
)
from sandbox.rootfs import apt_install_argv, debootstrap_argv
from taskyard.cli import build_parser

RUNNER_DIR = Path(__file__).parents[2] / "sandbox" / "runner"


@pytest.mark.parametrize(
    ("runtime", "apt", "pip"),
    [
        pytest.param("python", "", "", id="python-installs-nothing"),
        pytest.param(
            "python-data",
            "",
            "numpy pandas scipy matplotlib scikit-learn sympy",
            id="python-data-from-pip-not-debian-python3-packages",
        ),
        pytest.param("node", "nodejs", "", id="node"),
        pytest.param("c", "gcc libc6-dev", "", id="c"),
        pytest.param("java", "default-jdk-headless", "", id="java"),
    ],
)
def test_dockerfile_build_args(runtime: str, apt: str, pip: str) -> None:
    assert dockerfile_build_args(BY_NAME[runtime]) == {"APT_PACKAGES": apt, "PIP_PACKAGES": pip}


def test_dockerfile_argv_passes_the_packages_and_builds_the_candidate() -> None:
    argv = dockerfile_argv("docker", "img:1-candidate", RUNNER_DIR, BY_NAME["node"])
    assert argv == [
        "docker",
        "build",
        "--build-arg",
        "APT_PACKAGES=nodejs",
        "--build-arg",
        "PIP_PACKAGES=",
        "-t",
        "img:1-candidate",
        str(RUNNER_DIR),
    ]


def test_the_dockerfile_declares_the_build_arguments_it_is_given() -> None:
    dockerfile = (RUNNER_DIR / "Dockerfile").read_text()
    for name in dockerfile_build_args(BY_NAME["node"]):
        assert f"ARG {name}=" in dockerfile
        assert f"${name}" in dockerfile


@pytest.mark.parametrize(
    ("name", "candidate"),
    [
        pytest.param("taskyard-runner-node:1", "taskyard-runner-node:1-candidate", id="tagged"),
        pytest.param("runner", "runner:candidate", id="untagged"),
        pytest.param("host:5000/runner", "host:5000/runner:candidate", id="registry-port"),
    ],
)
def test_candidate_name(name: str, candidate: str) -> None:
    assert candidate_name(name) == candidate


def test_label_argv_names_the_image_with_every_label() -> None:
    labels = {RUNTIME_LABEL: "java", VERSION_LABEL: 'openjdk version "17.0.15" 2025-04-15'}
    assert label_argv("docker", "img:1", labels) == [
        "docker",
        "build",
        "--quiet",
        "--label",
        f"{RUNTIME_LABEL}=java",
        "--label",
        f'{VERSION_LABEL}=openjdk version "17.0.15" 2025-04-15',
        "-t",
        "img:1",
        "-",
    ]


def test_labels_of_a_runtime_with_modules_carry_their_versions_as_json() -> None:
    facts = ImageFacts(version="Python 3.11.2", packages={"pandas": "1.5.3", "numpy": "1.24.2"})
    labels = image_labels(BY_NAME["python-data"], facts)
    assert labels[RUNTIME_LABEL] == "python-data"
    assert labels[VERSION_LABEL] == "Python 3.11.2"
    assert json.loads(labels[PACKAGES_LABEL]) == {"numpy": "1.24.2", "pandas": "1.5.3"}


def test_labels_of_a_runtime_without_modules_have_no_packages() -> None:
    labels = image_labels(BY_NAME["node"], ImageFacts(version="v18.20.4", packages={}))
    assert labels == {RUNTIME_LABEL: "node", VERSION_LABEL: "v18.20.4"}


@pytest.mark.parametrize("runtime", RUNTIMES, ids=lambda r: r.name)
def test_every_runtime_has_a_hello_world(runtime: Runtime) -> None:
    assert HELLO[runtime.name].strip()


@pytest.mark.parametrize(
    ("runtime", "command"),
    [
        pytest.param("python", "cd /work && cat > main.py && exec python3 main.py", id="python"),
        pytest.param(
            "c",
            "cd /work && cat > main.c && gcc -std=c17 -O2 -pipe -o /work/main main.c -lm"
            " && exec /work/main",
            id="c-compiles-first",
        ),
    ],
)
def test_hello_command(runtime: str, command: str) -> None:
    assert hello_command(BY_NAME[runtime]) == ["sh", "-c", command]


def test_checks_run_as_tasks_run() -> None:
    argv = check_argv("docker", "img", BY_NAME["python"], ["python3", "-V"])
    joined = " ".join(argv)
    for flag in (
        "--user 65534:65534",
        "--network none",
        "--read-only",
        "--cap-drop ALL",
        "--security-opt no-new-privileges",
    ):
        assert flag in joined
    assert argv[-3:] == ["img", "python3", "-V"]
    assert argv[argv.index("--tmpfs") + 1].startswith("/work:rw,nosuid,nodev,noexec,")


def test_compiled_runtimes_check_with_an_executable_work_area() -> None:
    argv = check_argv("docker", "img", BY_NAME["cpp"], ["true"])
    assert ",exec," in argv[argv.index("--tmpfs") + 1]


def test_checks_set_the_runtime_environment() -> None:
    argv = check_argv("docker", "img", BY_NAME["python-data"], ["true"])
    assert "MPLBACKEND=Agg" in argv
    assert "MPLCONFIGDIR=/work/.matplotlib" in argv


@pytest.mark.parametrize(
    ("text", "line"),
    [
        pytest.param("v18.20.4\n", "v18.20.4", id="one-line"),
        pytest.param(
            '\nopenjdk version "17"\nOpenJDK Runtime\n', 'openjdk version "17"', id="java"
        ),
        pytest.param("", "", id="nothing"),
    ],
)
def test_first_line(text: str, line: str) -> None:
    assert first_line(text) == line


def test_debootstrap_and_apt_argv() -> None:
    root = Path("/var/tmp/r")
    assert debootstrap_argv("debootstrap", root, "http://m/debian") == [
        "debootstrap",
        "--variant=minbase",
        "--include=python3",
        "bookworm",
        "/var/tmp/r",
        "http://m/debian",
    ]
    assert apt_install_argv(root, ["gcc", "libc6-dev"]) == [
        "chroot",
        "/var/tmp/r",
        "apt-get",
        "install",
        "-y",
        "--no-install-recommends",
        "-o",
        "Dpkg::Use-Pty=0",
        "gcc",
        "libc6-dev",
    ]


@pytest.mark.parametrize(
    ("flags", "runtime", "every"),
    [
        pytest.param([], None, False, id="default"),
        pytest.param(["--runtime", "JS"], "node", False, id="alias-any-case"),
        pytest.param(["--runtime", "c++"], "cpp", False, id="alias"),
        pytest.param(["--all"], None, True, id="all"),
    ],
)
def test_image_build_flags(flags: list[str], runtime: str | None, every: bool) -> None:
    args = build_parser().parse_args(["image", "build", *flags])
    assert (args.runtime.name if args.runtime else None) == runtime
    assert args.all is every


def test_an_unknown_runtime_is_refused_naming_the_known(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["image", "build", "--runtime", "cobol"])
    assert exited.value.code == 2
    assert "no runtime 'cobol'; known: python, python-data, node" in capsys.readouterr().err


def test_runtime_and_all_are_exclusive() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["image", "build", "--runtime", "node", "--all"])
