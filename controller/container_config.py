"""What the engine is told to create for a `ContainerSpec`: the create arguments, hardened.

Hardening applied to every container: no network, read-only root filesystem, the only writable
places two tmpfs that share the task's `storage` (the work area at /work and /dev/shm, see
`shm_bytes`; their pages count against the memory limit too), no POSIX message queue space,
the task's code run as user 65534 with no capability, no-new-privileges, a pids limit,
file-size and open-file limits, an init process as PID 1, no mounts from the host, an
environment of our own making (nothing of the service's), and a seccomp profile that denies new
namespaces (`sandbox.seccomp`). The init and the supervisor run as root with CAP_SETUID and
CAP_SETGID only, which they need to start the code as its own user: that uid boundary keeps the
task away from the channel that carries its output and report (`sandbox.supervisor`).

Called by `controller.docker_runtime` (cold starts) and `controller.warm_containers` (warm
ones, created alike and fitted to their task by `fitted_limits` when claimed).
"""

from typing import Any

from docker.types import DeviceRequest, LogConfig, Ulimit

from controller.runtime import WARM_LABEL, ContainerSpec
from sandbox.supervisor import SOURCE

# The name gVisor's runsc is registered under in the engine's daemon.json (deploy/setup-host.sh,
# and `runsc install`).
GVISOR_RUNTIME = "runsc"

WORK_DIR = "/work"
# The container's processes start as root, with no capability but these; the supervisor
# starts the task's code as 65534 (`sandbox.supervisor.TASK_USER`), which drops them.
USER = "0:0"
SUPERVISOR_CAPS = ["SETUID", "SETGID"]
SHM_MAX = 64 * 1024 * 1024
# A best-effort task (no dedicated cores) yields to every task that holds cores.
BEST_EFFORT_SHARES = 2
CONTAINER_ENV = {
    "HOME": WORK_DIR,
    "TMPDIR": WORK_DIR,
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "PYTHONIOENCODING": "utf-8",
    "PYTHONUNBUFFERED": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
}


def work_inodes(storage: int) -> int:
    """Files the work area may hold: one per 4 KiB of its size, as a disk would have."""
    return max(1024, storage // 4096)


def shm_bytes(storage: int) -> int:
    """The part of the task's `storage` that is /dev/shm (POSIX shared memory and semaphores,
    which `multiprocessing` uses): an eighth, in whole pages, at least one page and at most
    64 MiB. The work area gets the rest, so what a task can write stays within `storage`."""
    return min(SHM_MAX, max(4096, storage // 8 // 4096 * 4096))


def work_bytes(storage: int) -> int:
    return max(4096, storage - shm_bytes(storage))


def create_args(
    api: Any, spec: ContainerSpec, *, seccomp: str | None, delivery_timeout: float
) -> dict[str, Any]:
    """Keyword arguments for docker-py's low-level `create_container` (the high-level call
    cannot set stdin_once). The supervisor waits `delivery_timeout` seconds for its code."""
    return {
        "image": spec.image,
        "command": ["python3", "-I", "-c", SOURCE, str(delivery_timeout)],
        "name": spec.name,
        "labels": spec.labels,
        # detach=False with stdin_open makes docker-py set StdinOnce, which it offers no
        # other way to set: the container's stdin closes when our one attach ends.
        "detach": False,
        "stdin_open": True,
        "user": USER,
        "environment": dict(CONTAINER_ENV),
        "network_disabled": True,
        "host_config": api.create_host_config(**host_settings(spec, seccomp=seccomp)),
    }


def host_settings(spec: ContainerSpec, *, seccomp: str | None) -> dict[str, Any]:
    """`create_host_config`'s arguments: the limits and the hardening."""
    settings: dict[str, Any] = {
        "network_mode": "none",
        "read_only": True,
        # nr_inodes: a million empty files end in ENOSPC, not in kernel memory.
        "tmpfs": {
            WORK_DIR: f"rw,nosuid,nodev,{'exec' if spec.exec_work else 'noexec'},"
            f"size={work_bytes(spec.storage)},"
            f"nr_inodes={work_inodes(spec.storage)},mode=1777"
        },
        "shm_size": shm_bytes(spec.storage),
        "cap_drop": ["ALL"],
        "cap_add": SUPERVISOR_CAPS,
        "security_opt": ["no-new-privileges:true"] + ([f"seccomp={seccomp}"] if seccomp else []),
        "pids_limit": spec.pids_limit,
        "ulimits": _ulimits(spec),
        "init": True,
        "ipc_mode": "private",
        "mem_limit": spec.ram,
        "memswap_limit": spec.ram,
        "mem_swappiness": 0,
        "cpuset_cpus": _cpuset(spec),
        "nano_cpus": _nano_cpus(spec),
        "log_config": LogConfig(
            type="json-file", config={"max-size": str(spec.log_limit), "max-file": "1"}
        ),
    }
    if not spec.cpus and WARM_LABEL not in spec.labels:
        # A warm container gets this at its claim, if its task is best effort.
        settings["cpu_shares"] = BEST_EFFORT_SHARES
    if spec.gpus:
        settings["device_requests"] = [
            DeviceRequest(device_ids=[str(gpu) for gpu in spec.gpus], capabilities=[["gpu"]])
        ]
    if spec.docker_runtime:
        settings["runtime"] = spec.docker_runtime
    if spec.docker_runtime == GVISOR_RUNTIME:
        # runsc mounts a writable, executable tmpfs of its own at /tmp where the container
        # has no mount there; an empty read-only one keeps /tmp as read-only as the root.
        settings["tmpfs"]["/tmp"] = "ro,nosuid,nodev,noexec,size=4k"
    return settings


def fitted_limits(spec: ContainerSpec) -> dict[str, int | str]:
    """What a claimed warm container is updated with to fit its task, in the engine's field
    names: the same cores, CPU quota and memory that `host_settings` gives a cold one."""
    limits: dict[str, int | str] = {
        "CpusetCpus": _cpuset(spec),
        "NanoCpus": _nano_cpus(spec),
        "Memory": spec.ram,
        "MemorySwap": spec.ram,
    }
    if not spec.cpus:
        limits["CpuShares"] = BEST_EFFORT_SHARES
    return limits


def _ulimits(spec: ContainerSpec) -> list[Ulimit]:
    return [
        Ulimit(name="nofile", soft=spec.nofile_limit, hard=spec.nofile_limit),
        Ulimit(name="fsize", soft=spec.storage, hard=spec.storage),
        Ulimit(name="core", soft=0, hard=0),
        # /dev/mqueue: no message queue can be made, so it holds nothing.
        Ulimit(name="msgqueue", soft=0, hard=0),
    ]


def _cpuset(spec: ContainerSpec) -> str:
    """Its dedicated cores, or all allocatable ones for a best-effort task."""
    return ",".join(str(core) for core in spec.cpus or spec.all_cpus)


def _nano_cpus(spec: ContainerSpec) -> int:
    return int(spec.cpu_quota * 1_000_000_000)
