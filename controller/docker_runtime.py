"""`ContainerRuntime` on the local Docker engine, through the docker SDK.

Hardening applied to every container: no network, read-only root filesystem, the only writable
place a tmpfs work area of the task's `storage` size at /work (its pages count against the
memory limit too), user 65534, all capabilities dropped, no-new-privileges, a pids limit,
file-size and open-file limits, an init process as PID 1, no mounts from the host, and an
environment of our own making (nothing of the service's).
"""

import socket
import struct
import time
from collections.abc import Iterator
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
    CapturedOutput,
    ContainerSpec,
    ObservedContainer,
    RuntimeHealth,
)
from controller.supervisor import SOURCE
from models.clock import as_utc

WORK_DIR = "/work"
USER = "65534:65534"
CONTAINER_ENV = {
    "HOME": WORK_DIR,
    "TMPDIR": WORK_DIR,
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "PYTHONIOENCODING": "utf-8",
    "PYTHONUNBUFFERED": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
}


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
    return ObservedContainer(
        name=attrs.get("Name", "").lstrip("/"),
        task_id=labels.get(TASK_LABEL, ""),
        attempt=int(labels.get(ATTEMPT_LABEL, "0") or 0),
        state=state.get("Status", "unknown"),
        exit_code=state.get("ExitCode") if state.get("Status") in {"exited", "dead"} else None,
        oom_killed=bool(state.get("OOMKilled")),
        started_at=_parse_engine_time(state.get("StartedAt")),
        finished_at=_parse_engine_time(state.get("FinishedAt")),
    )


class DockerRuntime:
    """Runs task containers on the Docker engine that `DOCKER_HOST` (or the socket) names."""

    def __init__(self, owner: str, image: str, *, delivery_timeout: float = 10.0) -> None:
        self._owner = owner
        self._image = image
        self._delivery_timeout = delivery_timeout
        self._client: docker.DockerClient | None = None
        self._stdin: dict[str, tuple[socket.socket, Any]] = {}

    def _engine(self) -> docker.DockerClient:
        if self._client is None:
            try:
                self._client = docker.from_env(timeout=30)
            except DockerException as exc:
                raise RuntimeUnavailable(f"cannot reach the Docker engine: {exc}") from exc
        return self._client

    def health(self) -> RuntimeHealth:
        try:
            engine = self._engine()
            info = engine.info()
            engine.images.get(self._image)
        except ImageNotFound:
            return RuntimeHealth(
                ok=False,
                message=f"runner image {self._image} is missing: run `taskyard image build`",
            )
        except (DockerException, RuntimeUnavailable, OSError) as exc:
            self._client = None
            return RuntimeHealth(ok=False, message=f"cannot reach the Docker engine: {exc}")
        return RuntimeHealth(
            ok=True,
            message=f"Docker {info.get('ServerVersion', '?')}, image {self._image} present",
            data_root=info.get("DockerRootDir"),
            details={"storage_driver": str(info.get("Driver", "")),
                     "cgroup_version": str(info.get("CgroupVersion", ""))},
        )

    def list_owned(self) -> list[ObservedContainer]:
        try:
            containers = self._engine().containers.list(
                all=True, filters={"label": f"{OWNER_LABEL}={self._owner}"}
            )
        except NotFound:
            # A container removed between the list and its inspect: look again next pass.
            raise RuntimeUnavailable("the container list changed while it was read") from None
        except (DockerException, OSError) as exc:
            self._client = None
            raise RuntimeUnavailable(f"cannot list containers: {exc}") from exc
        return [_observe(container.attrs) for container in containers]

    def run(self, spec: ContainerSpec) -> ObservedContainer:
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
            self._deliver(container, spec.payload, keep_open=spec.interactive)
            container.reload()
        except NotFound as exc:
            # Removed behind our back between create and start: look again next pass.
            raise RuntimeUnavailable(f"the container vanished while starting: {exc}") from exc
        except APIError as exc:
            if exc.is_client_error():
                raise StartRejected(f"the engine refused to start it: {exc.explanation}") from exc
            raise RuntimeUnavailable(f"cannot start the container: {exc}") from exc
        except (DockerException, OSError) as exc:
            raise RuntimeUnavailable(f"cannot start the container: {exc}") from exc
        return _observe(container.attrs)

    def _deliver(self, container: Any, payload: bytes, *, keep_open: bool) -> None:
        # The container was created with stdin_once: closing this one attach closes its stdin,
        # which tells the supervisor the input is complete. An interactive task keeps it open
        # for `send_input`.
        attached = container.attach_socket(params={"stdin": 1, "stream": 1})
        raw: socket.socket = attached._sock
        try:
            raw.sendall(payload)
        except OSError:
            raw.close()
            attached.close()
            raise
        if keep_open:
            self._stdin[container.name] = (raw, attached)
            return
        raw.close()
        attached.close()

    def send_input(self, name: str, data: bytes, *, eof: bool) -> bool:
        held = self._stdin.get(name)
        if held is None:
            return False
        raw, attached = held
        try:
            if data:
                raw.sendall(data)
        except OSError:
            eof = True
        if eof:
            del self._stdin[name]
            raw.close()
            attached.close()
        return True

    def _create_args(self, engine: docker.DockerClient, spec: ContainerSpec) -> dict[str, Any]:
        cores = spec.cpus or spec.all_cpus
        host_config: dict[str, Any] = {
            "network_mode": "none",
            "read_only": True,
            "tmpfs": {WORK_DIR: f"rw,nosuid,nodev,size={spec.storage},mode=1777"},
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges:true"],
            "pids_limit": spec.pids_limit,
            "ulimits": [
                Ulimit(name="nofile", soft=spec.nofile_limit, hard=spec.nofile_limit),
                Ulimit(name="fsize", soft=spec.storage, hard=spec.storage),
                Ulimit(name="core", soft=0, hard=0),
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
        if not spec.cpus:
            host_config["cpu_shares"] = 2  # best effort: yields to every task that holds cores
        if spec.gpus:
            host_config["device_requests"] = [
                DeviceRequest(device_ids=[str(gpu) for gpu in spec.gpus], capabilities=[["gpu"]])
            ]
        if spec.docker_runtime:
            host_config["runtime"] = spec.docker_runtime
        return {
            "image": spec.image,
            "command": ["python3", "-I", "-c", SOURCE, str(self._delivery_timeout)],
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

    def kill(self, name: str) -> ObservedContainer | None:
        try:
            container = self._engine().containers.get(name)
            if container.status in {"running", "paused", "restarting"}:
                container.kill()
            deadline = time.monotonic() + 10
            while container.status not in {"exited", "dead", "created"}:
                if time.monotonic() > deadline:
                    raise RuntimeUnavailable(f"container {name} did not stop after SIGKILL")
                time.sleep(0.05)
                container.reload()
        except NotFound:
            return None
        except APIError as exc:
            if exc.status_code == 409:  # not running any more
                return None
            raise RuntimeUnavailable(f"cannot kill {name}: {exc}") from exc
        except (DockerException, OSError) as exc:
            raise RuntimeUnavailable(f"cannot kill {name}: {exc}") from exc
        return _observe(container.attrs)

    def follow(self, name: str) -> Iterator[tuple[str, bytes]]:
        # The log file, followed: unlike attach(logs=True), which reads the log and only then
        # subscribes (and whose first bytes docker-py can drop), it has no gap. docker-py's
        # public logs() merges the two streams, so the frames are read here the way its own
        # _multiplexed_response_stream_helper reads them, keeping each frame's stream id.
        api = self._engine().api
        try:
            response = api._get(api._url("/containers/{0}/logs", name),
                                params={"stdout": 1, "stderr": 1, "follow": 1}, stream=True)
            api._raise_for_status(response)
            # A task may print nothing for longer than the client's timeout.
            api._disable_socket_timeout(api._get_raw_response_socket(response))
            while True:
                header = response.raw.read(8)
                if len(header) < 8:
                    return
                stream_id, length = struct.unpack(">BxxxL", header)
                data = response.raw.read(length) if length else b""
                if length and not data:
                    return
                if data:
                    yield ("stderr" if stream_id == STDERR else "stdout"), data
        except NotFound:
            return
        except (DockerException, OSError) as exc:
            raise RuntimeUnavailable(f"cannot follow {name}: {exc}") from exc

    def output(self, name: str) -> CapturedOutput:
        try:
            container = self._engine().containers.get(name)
            stdout = container.logs(stdout=True, stderr=False)
            stderr = container.logs(stdout=False, stderr=True)
        except NotFound:
            return CapturedOutput(b"", b"")
        except (DockerException, OSError) as exc:
            raise RuntimeUnavailable(f"cannot read the output of {name}: {exc}") from exc
        return CapturedOutput(stdout, stderr)

    def remove(self, name: str) -> None:
        held = self._stdin.pop(name, None)
        if held is not None:
            held[0].close()
            held[1].close()
        try:
            self._engine().containers.get(name).remove(force=True)
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
                    filters={"type": "container", "event": ["die"],
                             "label": f"{OWNER_LABEL}={self._owner}"},
                )
                for _event in events:
                    on_exit()
                    if stop.is_set():
                        break
                events.close()
            except (DockerException, RuntimeUnavailable, OSError, ValueError):
                stop.wait(2.0)
