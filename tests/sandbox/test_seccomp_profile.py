"""The packaged seccomp profile (`sandbox/seccomp/taskyard.json`) and how a setting picks a
profile: what it must deny whatever the capabilities, and what it hands to the engine."""

import json
from pathlib import Path
from typing import Any

import docker
import pytest

from controller.container_config import create_args
from controller.runtime import ContainerSpec
from models.settings import Settings
from sandbox.seccomp import PACKAGED, ProfileError, load_profile

PROFILE: dict[str, Any] = json.loads(PACKAGED.read_text())
NAMESPACE_FLAGS = 0x7E020000  # CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET


def rules_for(name: str) -> list[dict[str, Any]]:
    return [rule for rule in PROFILE["syscalls"] if name in rule["names"]]


def test_anything_not_listed_fails() -> None:
    assert PROFILE["defaultAction"] == "SCMP_ACT_ERRNO"


@pytest.mark.parametrize(
    "name",
    [
        "unshare",
        "setns",
        "mount",
        "umount2",
        "pivot_root",
        "chroot",
        "bpf",
        "perf_event_open",
        "keyctl",
        "add_key",
        "userfaultfd",
        "init_module",
        "finit_module",
        "kexec_load",
        "reboot",
        "open_by_handle_at",
        "fsopen",
        "fsmount",
        "move_mount",
        "open_tree",
        "swapon",
        "settimeofday",
        "clock_settime",
        "sethostname",
    ],
)
def test_never_allowed(name: str) -> None:
    assert not rules_for(name), name


def test_no_rule_depends_on_a_capability() -> None:
    # The engine's default reopens unshare, setns and clone's namespace flags for
    # CAP_SYS_ADMIN; here no capability changes anything.
    for rule in PROFILE["syscalls"]:
        for condition in ("includes", "excludes"):
            assert "caps" not in rule.get(condition, {}), rule


def test_clone_never_takes_a_namespace_flag() -> None:
    (rule,) = rules_for("clone")
    assert rule["action"] == "SCMP_ACT_ALLOW"
    assert rule["args"] == [
        {"index": 0, "value": NAMESPACE_FLAGS, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}
    ]


@pytest.mark.parametrize("name", ["clone3", "io_uring_setup", "io_uring_enter"])
def test_answered_with_enosys_so_programs_fall_back(name: str) -> None:
    (rule,) = rules_for(name)
    assert (rule["action"], rule["errnoRet"]) == ("SCMP_ACT_ERRNO", 38)


@pytest.mark.parametrize(
    "name",
    [
        "read",
        "write",
        "openat",
        "mmap",
        "futex",
        "execve",
        "wait4",
        "pipe2",
        "epoll_wait",
        "rt_sigaction",
        "socketpair",
    ],
)
def test_what_every_program_needs_is_allowed(name: str) -> None:
    assert any(
        rule["action"] == "SCMP_ACT_ALLOW" and "args" not in rule for rule in rules_for(name)
    ), name


def test_the_setting_picks_a_profile(tmp_path: Path) -> None:
    assert json.loads(load_profile("taskyard") or "") == PROFILE
    assert load_profile("engine") is None
    own = tmp_path / "own.json"
    own.write_text('{"defaultAction": "SCMP_ACT_ALLOW"}')
    assert load_profile(str(own)) == '{"defaultAction":"SCMP_ACT_ALLOW"}'


@pytest.mark.parametrize("text", ["{not json", "[1]", '{"syscalls": []}'])
def test_a_broken_profile_file_is_refused_with_its_path(tmp_path: Path, text: str) -> None:
    path = tmp_path / "broken.json"
    path.write_text(text)
    with pytest.raises(ProfileError, match=r"broken\.json"):
        load_profile(str(path))


def test_an_unknown_setting_is_refused_at_startup() -> None:
    with pytest.raises(ValueError, match="neither 'taskyard', 'engine' nor the path"):
        Settings(seccomp_profile="/nonexistent/profile.json")


def security_options(setting: str) -> list[str]:
    spec = ContainerSpec(
        name="c",
        labels={},
        image="i",
        cpus=(0,),
        all_cpus=(0,),
        cpu_quota=1.0,
        gpus=(),
        ram=64 << 20,
        storage=16 << 20,
        pids_limit=64,
        nofile_limit=64,
        payload=b"",
        log_limit=1 << 20,
    )
    engine = docker.DockerClient(base_url="unix:///nonexistent.sock", version="1.41")
    arguments = create_args(engine.api, spec, seccomp=load_profile(setting), delivery_timeout=10)
    options: list[str] = arguments["host_config"]["SecurityOpt"]
    return options


def test_the_profile_text_goes_to_the_engine() -> None:
    options = security_options("taskyard")
    assert options[0] == "no-new-privileges:true"
    assert json.loads(options[1].removeprefix("seccomp=")) == PROFILE
    assert security_options("engine") == ["no-new-privileges:true"]
