"""`ContainerRuntime` on the local Docker engine, through the docker SDK.

Hardening applied to every container: no network, read-only root filesystem, the only writable
places two tmpfs that share the task's `storage` (the work area at /work and /dev/shm, see
`shm_bytes`; their pages count against the memory limit too), no POSIX message queue space,
the task's code run as user 65534 with no capability, no-new-privileges, a pids limit,
file-size and open-file limits, an init process as PID 1, no mounts from the host, an
environment of our own making (nothing of the service's), and a seccomp profile that denies new
namespaces (`sandbox.seccomp`). The init and the supervisor run as root with CAP_SETUID and
CAP_SETGID only, which they need to start the code as its own user: that uid boundary keeps the
task away from the channel that carries its output and report (`sandbox.supervisor`).
"""

import logging
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime
from typing import Any

import docker
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.types import DeviceRequest, LogConfig, Ulimit
from docker.utils.socket import STDERR

from controller.crashpoints import crashpoint
from controller.errors import RuntimeUnavailable, StartRejected
from controller.runtime import (
    ATTEMPT_LABEL,
    OWNER_LABEL,
    TASK_LABEL,
    WARM_LABEL,
    CapturedOutput,
    ContainerSpec,
    InputResult,
    ObservedContainer,
    RuntimeHealth,
    WarmKey,
)
from controller.stdin_pump import StdinPump
from controller.warm_pool import Warm, WarmPool
from models.clock import as_utc
from sandbox.frames import FrameDecoder, decode_output, frame_key, keyed
from sandbox.seccomp import TASKYARD, load_profile
from sandbox.supervisor import SOURCE

log = logging.getLogger("taskyard.controller")

HEALTH_CACHE_SECONDS = 5.0
# The name gVisor's runsc is registered under in the engine's daemon.json (deploy/setup-host.sh,
# and `runsc install`).
GVISOR_RUNTIME = "runsc"

WORK_DIR = "/work"
# The container's processes start as root, with no capability but these; the supervisor
# starts the task's code as 65534 (`sandbox.supervisor.TASK_USER`), which drops them.
USER = "0:0"
SUPERVISOR_CAPS = ["SETUID", "SETGID"]
SHM_MAX = 64 * 1024 * 1024
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


def _parse_engine_time(text: str | None) -> datetime | None:
    # The engine writes nanoseconds ("2026-11-27T22:00:00.123456789Z"); Python takes micro.
    if not text or text.startswith("0001-01-01"):
        return None
    head, _, rest = text.partition(".")
    fraction = "".join(ch for ch in rest if ch.isdigit())[:6]
    moment = datetime.fromisoformat(f"{head}.{fraction or '0'}+00:00")
    return as_utc(moment)


def _observe(attrs: dict[str, Any]) -> ObservedContainer:
    labels = attrs.get("Config", {}).get("Labels") or {}
    state = attrs.get("State", {})
    name = attrs.get("Name", "").lstrip("/")
    task_id, attempt = labels.get(TASK_LABEL, ""), int(labels.get(ATTEMPT_LABEL, "0") or 0)
    started_at = _parse_engine_time(state.get("StartedAt"))
    if labels.get(WARM_LABEL):
        # A claimed warm container carries its attempt in the name the claim gave it
        # (`container_name`), and started long before its task did: its engine start time
        # says nothing about the task.
        task_id, _, number = name.rpartition("-")
        task_id = task_id.rpartition("-")[2]
        attempt = int(number) if number.isdigit() else 0
        started_at = None
    return ObservedContainer(
        name=name,
        task_id=task_id,
        attempt=attempt,
        state=state.get("Status", "unknown"),
        exit_code=state.get("ExitCode") if state.get("Status") in {"exited", "dead"} else None,
        oom_killed=bool(state.get("OOMKilled")),
        started_at=started_at,
        finished_at=_parse_engine_time(state.get("FinishedAt")),
        sandboxed=attrs.get("HostConfig", {}).get("Runtime") == GVISOR_RUNTIME,
    )


class DockerRuntime:
    """Runs task containers on the Docker engine that `DOCKER_HOST` (or the socket) names."""

    def __init__(
        self,
        owner: str,
        image: str,
        *,
        delivery_timeout: float = 10.0,
        warm_max_idle_seconds: float = 300.0,
        seccomp_profile: str = TASKYARD,
    ) -> None:
        self._owner = owner
        self._image = image
        self._delivery_timeout = delivery_timeout
        self._seccomp = load_profile(seccomp_profile)
        self._client: docker.DockerClient | None = None
        # Interactive containers' stdin, written off the pass. The service points
        # `on_stdin_room` at its wake, so that input refused as FULL is offered again soon.
        self._stdin = StdinPump(on_room=self._stdin_room)
        self.on_stdin_room: Callable[[], None] | None = None
        self._warm_prefix = f"taskyard-{owner[:12]}-warm-"
        self._warm_max_idle = warm_max_idle_seconds
        self._warm_templates: dict[WarmKey, ContainerSpec] = {}
        self._pool: WarmPool[WarmKey] | None = None
        self._said_no_warm = False
        self._healthy: tuple[float, RuntimeHealth] | None = None
        self._running: dict[str, ObservedContainer] = {}  # container id -> as last inspected
        self._died: set[str] = set()  # ids from "die" events, not yet looked at again
        self._removals = ThreadPoolExecutor(max_workers=2, thread_name_prefix="taskyard-remove")
        # The engine answers a SIGKILL only once the container has stopped: kills run here.
        self._kills = ThreadPoolExecutor(max_workers=2, thread_name_prefix="taskyard-kill")
        self._killing: set[str] = set()
        self._killing_lock = threading.Lock()

    def _engine(self) -> docker.DockerClient:
        if self._client is None:
            try:
                self._client = docker.from_env(timeout=30)
            except DockerException as exc:
                raise RuntimeUnavailable(f"cannot reach the Docker engine: {exc}") from exc
        return self._client

    def health(self) -> RuntimeHealth:
        # Asked every pass: a healthy answer holds for a few seconds, and any failed engine
        # call in between drops it (see `_lost_engine`).
        if self._healthy is not None and time.monotonic() - self._healthy[0] < HEALTH_CACHE_SECONDS:
            return self._healthy[1]
        try:
            engine = self._engine()
            info = engine.info()
            engine.images.get(self._image)
        except ImageNotFound:
            return RuntimeHealth(
                ok=False,
                message=f"runner image {self._image} is missing: run `taskyard image build`",
            )
        except RuntimeUnavailable as exc:  # says what failed already
            self._lost_engine()
            return RuntimeHealth(ok=False, message=str(exc))
        except (DockerException, OSError) as exc:
            self._lost_engine()
            return RuntimeHealth(ok=False, message=f"cannot reach the Docker engine: {exc}")
        healthy = RuntimeHealth(
            ok=True,
            message=f"Docker {info.get('ServerVersion', '?')}, image {self._image} present",
            data_root=info.get("DockerRootDir"),
            details={
                "storage_driver": str(info.get("Driver", "")),
                "cgroup_version": str(info.get("CgroupVersion", "")),
            },
        )
        self._healthy = (time.monotonic(), healthy)
        return healthy

    def _lost_engine(self) -> None:
        """Forget the client and the cached health: the next call reconnects and asks again.

        The warm pool goes too: its containers' stdin attaches died with the connection, so
        none of them could ever receive code. The next `keep_warm` sweeps them and starts anew.
        """
        self._client = None
        self._healthy = None
        pool, self._pool = self._pool, None
        if pool is not None:
            threading.Thread(target=pool.close, name="taskyard-warm-close", daemon=True).start()

    def list_owned(self, *, settled: Collection[str] = ()) -> list[ObservedContainer]:
        # One list call; an inspect only for containers not seen running before (a running
        # container's start time does not change), so a pass costs little with many running.
        # A settled one is never inspected: the engine holds a container's lock while it
        # handles its exit, and an inspect then waits tens of milliseconds for nothing.
        api = self._engine().api
        # The list's state can lag the "die" event; a container that died is inspected anew.
        died, self._died = self._died, set()
        try:
            summaries = api.containers(all=True, filters={"label": f"{OWNER_LABEL}={self._owner}"})
            observed, running = [], {}
            for summary in summaries:
                name = (summary.get("Names") or ["/"])[0].lstrip("/")
                if name.startswith(self._warm_prefix):
                    continue  # in the pool: no task's yet
                cid = summary["Id"]
                seen = self._running.get(cid)
                if (
                    summary.get("State") == "running"
                    and seen is not None
                    and seen.name == name
                    and cid not in died
                ):
                    container = seen
                elif name in settled:
                    container = _observe(
                        {
                            "Name": name,
                            "Config": {"Labels": summary["Labels"]},
                            "State": {"Status": summary.get("State")},
                        }
                    )
                    observed.append(container)
                    continue
                else:
                    try:
                        container = _observe(api.inspect_container(cid))
                    except NotFound:
                        continue  # removed between the list and its inspect
                if container.state == "running":
                    running[cid] = container
                observed.append(container)
        except (DockerException, OSError) as exc:
            self._lost_engine()
            raise RuntimeUnavailable(f"cannot list containers: {exc}") from exc
        self._running = running
        return observed

    def run(self, spec: ContainerSpec) -> ObservedContainer:
        key = WarmKey.of(spec)
        warm = self._pool.claim(key) if self._pool is not None and key is not None else None
        if warm is not None:
            started = self._run_warm(warm, spec)
            if started is not None:
                return started
        return self._run_cold(spec)

    def _run_cold(self, spec: ContainerSpec) -> ObservedContainer:
        engine = self._engine()
        try:
            # The low-level call: the high-level one cannot set stdin_once.
            engine.api.create_container(**self._create_args(engine, spec))
        except ImageNotFound as exc:
            raise RuntimeUnavailable(f"runner image {spec.image} is missing") from exc
        except APIError as exc:
            if exc.status_code == 409:
                pass  # created by an earlier try of this very attempt, never started
            elif exc.is_client_error():
                raise StartRejected(f"the engine refused the container: {exc.explanation}") from exc
            else:
                raise RuntimeUnavailable(f"cannot create the container: {exc}") from exc
        except (DockerException, OSError) as exc:
            raise RuntimeUnavailable(f"cannot create the container: {exc}") from exc
        crashpoint("after-create")
        try:
            container = engine.containers.get(spec.name)
            container.start()
            self._deliver(
                container, keyed(self._key(spec.name), spec.payload), keep_open=spec.interactive
            )
            container.reload()
            started = _observe(container.attrs)
            if started.state == "running":
                self._running[container.id] = started  # so the next list need not inspect it
        except NotFound as exc:
            # Removed behind our back between create and start: look again next pass.
            raise RuntimeUnavailable(f"the container vanished while starting: {exc}") from exc
        except APIError as exc:
            if exc.is_client_error():
                raise StartRejected(f"the engine refused to start it: {exc.explanation}") from exc
            raise RuntimeUnavailable(f"cannot start the container: {exc}") from exc
        except (DockerException, OSError) as exc:
            raise RuntimeUnavailable(f"cannot start the container: {exc}") from exc
        return started

    def _run_warm(self, warm: Warm[WarmKey], spec: ContainerSpec) -> ObservedContainer | None:
        """Fit a claimed warm container to the task, give it the attempt's name, deliver the
        code. None where it could not be fitted (it is discarded; the caller starts cold)."""
        api = self._engine().api
        cores = spec.cpus or spec.all_cpus
        limits = {
            "CpusetCpus": ",".join(str(core) for core in cores),
            "NanoCpus": int(spec.cpu_quota * 1_000_000_000),
            "Memory": spec.ram,
            "MemorySwap": spec.ram,
        }
        if not spec.cpus:
            limits["CpuShares"] = 2  # as `_create_args` gives a cold best-effort container
        try:
            # docker-py's update() cannot set NanoCpus; the engine's endpoint can.
            response = api._post_json(api._url("/containers/{0}/update", warm.name), data=limits)
            api._raise_for_status(response)
            api.rename(warm.name, spec.name)
        except (DockerException, OSError) as exc:
            log.info("warm container %s could not be fitted (%s); starting cold", warm.name, exc)
            self._discard_warm(warm)
            return None
        # From here the container is the attempt's, under its name: what happens next is what
        # happens to a cold start (a lost payload ends it as "no code was delivered").
        crashpoint("after-claim")
        raw, attached = warm.stdin
        try:
            self._send(
                raw,
                attached,
                spec.name,
                keyed(self._key(spec.name), spec.payload),
                keep_open=spec.interactive,
            )
        except OSError as exc:
            # Its stdin was gone (the engine restarted since): the code never got in, so the
            # container goes and the next pass starts the attempt afresh.
            self.remove(spec.name)
            raise RuntimeUnavailable(f"could not deliver the code to {spec.name}: {exc}") from exc
        # Running since the pool started it; the task's start time is the controller's.
        started = ObservedContainer(
            name=spec.name,
            task_id=spec.labels.get(TASK_LABEL, ""),
            attempt=int(spec.labels.get(ATTEMPT_LABEL, "0")),
            state="running",
        )
        self._running[warm.engine_id] = started  # so the next list need not inspect it
        return started

    def keep_warm(self, wanted: list[tuple[ContainerSpec, int]]) -> None:
        targets = {}
        for template, count in wanted:
            key = WarmKey.of(template)
            if template.docker_runtime == GVISOR_RUNTIME:
                # runsc cannot change a running container's limits (`docker update` fails: it
                # has no `update` command), so no warm container could be fitted to its task.
                if not self._said_no_warm:
                    log.info("no warm containers under gVisor: runsc cannot update limits")
                    self._said_no_warm = True
                continue
            if key is not None:
                self._warm_templates[key] = template
                targets[key] = count
        if self._pool is None:
            if not targets:
                return
            self._remove_stale_warm()
            self._pool = WarmPool(
                self._make_warm, self._discard_warm, max_idle_seconds=self._warm_max_idle
            )
        self._pool.want(targets)

    def warm_ready(self) -> int:
        """Warm containers ready to be claimed now."""
        return self._pool.ready_count() if self._pool is not None else 0

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
        self._stdin.close()
        self._kills.shutdown(wait=True)
        self._removals.shutdown(wait=True)

    def _make_warm(self, key: WarmKey) -> Warm[WarmKey]:
        name = self._warm_prefix + uuid.uuid4().hex[:16]
        spec = replace(
            self._warm_templates[key], name=name, labels={OWNER_LABEL: self._owner, WARM_LABEL: "1"}
        )
        engine = self._engine()
        # It waits for its code a little longer than the pool keeps it, then ends by itself.
        created = engine.api.create_container(
            **self._create_args(engine, spec, delivery_timeout=self._warm_max_idle + 60)
        )
        try:
            engine.api.start(name)
            attached = engine.api.attach_socket(name, params={"stdin": 1, "stream": 1})
        except (DockerException, OSError):
            engine.api.remove_container(name, force=True)
            raise
        return Warm(
            name=name,
            key=key,
            created=time.monotonic(),
            stdin=(attached._sock, attached),
            engine_id=created["Id"],
        )

    def _discard_warm(self, warm: Warm[WarmKey]) -> None:
        raw, attached = warm.stdin
        raw.close()
        attached.close()
        self.remove(warm.name)

    def _remove_stale_warm(self) -> None:
        """Warm containers of an earlier run of this instance: their stdin is gone with it."""
        try:
            stale = self._engine().containers.list(
                all=True, filters={"label": [f"{OWNER_LABEL}={self._owner}", WARM_LABEL]}
            )
        except (DockerException, OSError) as exc:
            log.warning("cannot list warm containers left by an earlier run: %s", exc)
            return
        for container in stale:
            if container.name.startswith(self._warm_prefix):
                self.remove(container.name)

    def _key(self, name: str) -> bytes:
        # The instance id is never inside a container, so the task cannot work the key out.
        return frame_key(self._owner, name)

    def _deliver(self, container: Any, payload: bytes, *, keep_open: bool) -> None:
        # The container was created with stdin_once: closing this one attach closes its stdin,
        # which tells the supervisor the input is complete. An interactive task keeps it open
        # for `send_input`.
        attached = container.attach_socket(params={"stdin": 1, "stream": 1})
        self._send(attached._sock, attached, container.name, payload, keep_open=keep_open)

    def _send(
        self, raw: socket.socket, attached: Any, name: str, payload: bytes, *, keep_open: bool
    ) -> None:
        # Bounded: a container that does not take its code within the delivery timeout (its
        # supervisor gives up waiting then too) fails its task, and the caller removes it.
        raw.settimeout(self._delivery_timeout)
        try:
            raw.sendall(payload)
        except OSError as exc:
            raw.close()
            attached.close()
            if isinstance(exc, TimeoutError):
                raise StartRejected(
                    f"the container did not take its code within {self._delivery_timeout:g} s"
                ) from exc
            raise
        if keep_open:
            self._stdin.add(name, raw, attached.close)
            return
        raw.close()
        attached.close()

    def send_input(self, name: str, data: bytes, *, eof: bool) -> InputResult:
        return self._stdin.offer(name, data, eof=eof)

    def _stdin_room(self) -> None:
        if self.on_stdin_room is not None:
            self.on_stdin_room()

    def _create_args(
        self,
        engine: docker.DockerClient,
        spec: ContainerSpec,
        *,
        delivery_timeout: float | None = None,
    ) -> dict[str, Any]:
        cores = spec.cpus or spec.all_cpus
        host_config: dict[str, Any] = {
            "network_mode": "none",
            "read_only": True,
            # nr_inodes: a million empty files end in ENOSPC, not in kernel memory.
            "tmpfs": {
                WORK_DIR: f"rw,nosuid,nodev,noexec,size={work_bytes(spec.storage)},"
                f"nr_inodes={work_inodes(spec.storage)},mode=1777"
            },
            "shm_size": shm_bytes(spec.storage),
            "cap_drop": ["ALL"],
            "cap_add": SUPERVISOR_CAPS,
            "security_opt": ["no-new-privileges:true"]
            + ([f"seccomp={self._seccomp}"] if self._seccomp else []),
            "pids_limit": spec.pids_limit,
            "ulimits": [
                Ulimit(name="nofile", soft=spec.nofile_limit, hard=spec.nofile_limit),
                Ulimit(name="fsize", soft=spec.storage, hard=spec.storage),
                Ulimit(name="core", soft=0, hard=0),
                # /dev/mqueue: no message queue can be made, so it holds nothing.
                Ulimit(name="msgqueue", soft=0, hard=0),
            ],
            "init": True,
            "ipc_mode": "private",
            "mem_limit": spec.ram,
            "memswap_limit": spec.ram,
            "mem_swappiness": 0,
            "cpuset_cpus": ",".join(str(core) for core in cores),
            "nano_cpus": int(spec.cpu_quota * 1_000_000_000),
            "log_config": LogConfig(
                type="json-file", config={"max-size": str(spec.log_limit), "max-file": "1"}
            ),
        }
        if not spec.cpus and WARM_LABEL not in spec.labels:
            # Best effort: yields to every task that holds cores. (A warm container gets this
            # at its claim, if its task is best effort.)
            host_config["cpu_shares"] = 2
        if spec.gpus:
            host_config["device_requests"] = [
                DeviceRequest(device_ids=[str(gpu) for gpu in spec.gpus], capabilities=[["gpu"]])
            ]
        if spec.docker_runtime:
            host_config["runtime"] = spec.docker_runtime
        if spec.docker_runtime == GVISOR_RUNTIME:
            # runsc mounts a writable, executable tmpfs of its own at /tmp where the container
            # has no mount there; an empty read-only one keeps /tmp as read-only as the root.
            host_config["tmpfs"]["/tmp"] = "ro,nosuid,nodev,noexec,size=4k"
        return {
            "image": spec.image,
            "command": [
                "python3",
                "-I",
                "-c",
                SOURCE,
                str(delivery_timeout or self._delivery_timeout),
            ],
            "name": spec.name,
            "labels": spec.labels,
            # detach=False with stdin_open makes docker-py set StdinOnce, which it offers no
            # other way to set: the container's stdin closes when our one attach ends.
            "detach": False,
            "stdin_open": True,
            "user": USER,
            "environment": dict(CONTAINER_ENV),
            "network_disabled": True,
            "host_config": engine.api.create_host_config(**host_config),
        }

    def kill(self, name: str) -> None:
        # In the background: the engine answers a SIGKILL only once the container has stopped
        # (or after about 12 s of trying). Its "die" event then wakes the pass that judges it.
        with self._killing_lock:
            if name in self._killing:
                return  # the kill sent earlier is still under way
            self._killing.add(name)
        self._kills.submit(self._kill_quietly, name)

    def _kill_quietly(self, name: str) -> None:
        try:
            self._engine().api.kill(name)
        except NotFound:
            pass
        except APIError as exc:
            if exc.status_code != 409:  # 409: not running any more
                log.warning("cannot kill %s: %s; the next pass tries again", name, exc)
                return
        except (DockerException, RuntimeUnavailable, OSError) as exc:
            log.warning("cannot kill %s: %s; the next pass tries again", name, exc)
            return
        finally:
            with self._killing_lock:
                self._killing.discard(name)
        # Only once it has stopped: an EOF on its stdin before the kill would let the code go on.
        self._stdin.drop(name)

    def inspect(self, name: str) -> ObservedContainer | None:
        try:
            return _observe(self._engine().api.inspect_container(name))
        except NotFound:
            return None
        except (DockerException, OSError) as exc:
            raise RuntimeUnavailable(f"cannot inspect {name}: {exc}") from exc

    def follow(self, name: str) -> Iterator[tuple[str, bytes]]:
        # The supervisor writes everything as keyed lines on the container's stdout; what the
        # container writes on stderr is not the supervisor's and is not read.
        decoder = FrameDecoder(self._key(name))
        for data in self._followed_stdout(name):
            yield from decoder.feed(data)
        yield from decoder.close()

    def _followed_stdout(self, name: str) -> Iterator[bytes]:
        # The log file, followed: unlike attach(logs=True), which reads the log and only then
        # subscribes (and whose first bytes docker-py can drop), it has no gap. The frames are
        # read here the way docker-py's _multiplexed_response_stream_helper reads them.
        api = self._engine().api
        try:
            response = api._get(
                api._url("/containers/{0}/logs", name),
                params={"stdout": 1, "stderr": 0, "follow": 1},
                stream=True,
            )
            api._raise_for_status(response)
            # A task may print nothing for longer than the client's timeout.
            api._disable_socket_timeout(api._get_raw_response_socket(response))
            try:
                while True:
                    header = response.raw.read(8)
                    if len(header) < 8:
                        return
                    stream_id, length = struct.unpack(">BxxxL", header)
                    data = response.raw.read(length) if length else b""
                    if length and not data:
                        return
                    if data and stream_id != STDERR:
                        yield data
            finally:  # also when the reader stops early, at the supervisor's report
                response.close()
        except NotFound:
            return
        except (DockerException, OSError) as exc:
            raise RuntimeUnavailable(f"cannot follow {name}: {exc}") from exc

    def output(self, name: str) -> CapturedOutput:
        try:
            container = self._engine().containers.get(name)
            framed = container.logs(stdout=True, stderr=False)
        except NotFound:
            return CapturedOutput(b"", b"")
        except (DockerException, OSError) as exc:
            raise RuntimeUnavailable(f"cannot read the output of {name}: {exc}") from exc
        return CapturedOutput(*decode_output(self._key(name), framed))

    def remove_soon(self, name: str, then: Callable[[], None] | None = None) -> None:
        # Removing a container that is still exiting waits for its exit: tens of milliseconds
        # the reconcile pass need not spend.
        self._removals.submit(self._remove_quietly, name, then)

    def _remove_quietly(self, name: str, then: Callable[[], None] | None) -> None:
        try:
            self.remove(name)
        except RuntimeUnavailable as exc:
            log.warning("%s; the next pass removes it", exc)
        if then is not None:
            then()

    def remove(self, name: str) -> None:
        self._stdin.drop(name)
        try:
            # By name, without looking it up first: an inspect of a container that is still
            # exiting would wait for the engine's exit handling.
            self._engine().api.remove_container(name, force=True)
        except NotFound:
            return
        except APIError as exc:
            if exc.status_code == 409:  # removal already in progress
                return
            raise RuntimeUnavailable(f"cannot remove {name}: {exc}") from exc
        except (DockerException, OSError) as exc:
            raise RuntimeUnavailable(f"cannot remove {name}: {exc}") from exc

    def wait_for_exit_events(self, on_exit: Any, stop: Any) -> None:
        """Call `on_exit()` whenever one of our containers dies, until `stop` is set."""
        while not stop.is_set():
            try:
                events = self._engine().events(
                    decode=True,
                    filters={
                        "type": "container",
                        "event": ["die"],
                        "label": f"{OWNER_LABEL}={self._owner}",
                    },
                )
                for event in events:
                    self._died.add(str(event.get("id") or event.get("Actor", {}).get("ID", "")))
                    on_exit()
                    if stop.is_set():
                        return
                events.close()
            except (DockerException, RuntimeUnavailable, OSError, ValueError):
                stop.wait(2.0)
            # The stream ended: the engine went away (a restart, a crash). Start over, and have
            # a pass look at everything again.
            self._lost_engine()
            on_exit()
