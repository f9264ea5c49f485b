"""`ContainerRuntime` on the local Docker engine, through the docker SDK.

Who does what:
- `controller.engine`: the connection, shared by the pass and the background threads;
- `controller.engine_errors`: the one translation of the SDK's errors into taskyard's;
- `controller.engine_wire`: the SDK's private parts taskyard needs, fenced;
- `controller.container_config`: a `ContainerSpec` as create arguments, with the hardening;
- `controller.container_state`: the engine's answers as `ObservedContainer`s;
- `controller.container_streams`: the code delivered to stdin, the frames read from stdout;
- `controller.warm_containers`: the warm pool on the engine;
- `controller.engine_events`: the "die" events that wake a pass.
Here: health, listing, starting (cold, or a claimed warm container), kills and removals, which
run in the background where the engine would hold the pass.
"""

import logging
import socket
import threading
import time
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from controller import engine_wire
from controller.container_config import create_args
from controller.container_state import listed, observed
from controller.container_streams import captured_output, follow_frames, send_payload
from controller.crashpoints import crashpoint
from controller.engine import EngineConnection
from controller.engine_errors import engine_call
from controller.engine_events import follow_exits
from controller.errors import ContainerGone, ImageMissing, RuntimeUnavailable
from controller.runtime import (
    ATTEMPT_LABEL,
    OWNER_LABEL,
    TASK_LABEL,
    CapturedOutput,
    ContainerSpec,
    InputResult,
    ObservedContainer,
    RuntimeHealth,
    WarmKey,
)
from controller.runtime_images import installed_runtimes, with_default
from controller.stdin_pump import StdinPump
from controller.warm_containers import WarmContainers
from controller.warm_pool import Warm
from models.runtimes import RUNTIME_LABEL
from sandbox.frames import frame_key, keyed
from sandbox.seccomp import TASKYARD, load_profile

log = logging.getLogger("taskyard.controller")

HEALTH_CACHE_SECONDS = 5.0


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
        engine: EngineConnection | None = None,
    ) -> None:
        self._owner = owner
        self._image = image
        self._delivery_timeout = delivery_timeout
        self._seccomp = load_profile(seccomp_profile)
        self._engine = engine or EngineConnection()
        # Interactive containers' stdin, written off the pass. The service points
        # `on_stdin_room` at its wake, so that input refused as FULL is offered again soon.
        self._stdin = StdinPump(on_room=self._stdin_room)
        self.on_stdin_room: Callable[[], None] | None = None
        self._warm = WarmContainers(
            self._engine,
            owner,
            seccomp=self._seccomp,
            max_idle_seconds=warm_max_idle_seconds,
            remove=self.remove,
        )
        self._healthy: tuple[float, RuntimeHealth] | None = None
        self._running: dict[str, ObservedContainer] = {}  # container id -> as last inspected
        self._died: set[str] = set()  # ids from "die" events, not yet looked at again
        self._died_lock = threading.Lock()
        self._removals = ThreadPoolExecutor(max_workers=2, thread_name_prefix="taskyard-remove")
        # The engine answers a SIGKILL only once the container has stopped: kills run here.
        self._kills = ThreadPoolExecutor(max_workers=2, thread_name_prefix="taskyard-kill")
        self._killing: set[str] = set()
        self._killing_lock = threading.Lock()

    # --- health and listing ----------------------------------------------------------------

    def health(self) -> RuntimeHealth:
        # Asked every pass: a healthy answer holds for a few seconds, and any failed engine
        # call in between drops it (see `_lost_engine`, which may run on another thread).
        cached = self._healthy
        if cached is not None and time.monotonic() - cached[0] < HEALTH_CACHE_SECONDS:
            return cached[1]
        try:
            with engine_call("reach the Docker engine"):
                client = self._engine.client()
                info = client.info()
                client.images.get(self._image)
                labelled = client.images.list(filters={"label": RUNTIME_LABEL})
        except ImageMissing:
            return RuntimeHealth(
                ok=False,
                message=f"runner image {self._image} is missing: run `taskyard image build`",
            )
        except RuntimeUnavailable as exc:
            self._lost_engine()
            return RuntimeHealth(ok=False, message=str(exc))
        healthy = RuntimeHealth(
            ok=True,
            message=f"Docker {info.get('ServerVersion', '?')}, image {self._image} present",
            data_root=info.get("DockerRootDir"),
            details={
                "storage_driver": str(info.get("Driver", "")),
                "cgroup_version": str(info.get("CgroupVersion", "")),
            },
            runtimes=with_default(
                installed_runtimes(
                    ((image.tags, image.labels or {}) for image in labelled), self._image
                ),
                self._image,
            ),
        )
        self._healthy = (time.monotonic(), healthy)
        return healthy

    def _lost_engine(self) -> None:
        """Forget the client and the cached health: the next call reconnects and asks again.
        The warm pool goes too: its containers' stdin attaches died with the connection.
        Called on the pass and on the events thread alike: each part is swapped whole."""
        self._engine.forget()
        self._healthy = None
        self._warm.lose()

    def list_owned(self, *, settled: Collection[str] = ()) -> list[ObservedContainer]:
        # One list call; an inspect only for containers not seen running before (a running
        # container's start time does not change), so a pass costs little with many running.
        # A settled one is never inspected: the engine holds a container's lock while it
        # handles its exit, and an inspect then waits tens of milliseconds for nothing.
        with self._died_lock:  # the list's state can lag the "die" event: inspect those anew
            died, self._died = self._died, set()
        try:
            with engine_call("list containers"):
                api = self._engine.client().api
                summaries = api.containers(
                    all=True, filters={"label": f"{OWNER_LABEL}={self._owner}"}
                )
                found = [
                    entry
                    for summary in summaries
                    if (entry := self._listed(api, summary, settled, died)) is not None
                ]
        except RuntimeUnavailable:
            self._lost_engine()
            raise
        self._running = {
            cid: container
            for cid, container, inspected in found
            if inspected and container.state == "running"
        }
        return [container for _, container, _ in found]

    def _listed(
        self, api: Any, summary: dict[str, Any], settled: Collection[str], died: set[str]
    ) -> tuple[str, ObservedContainer, bool] | None:
        """One listed container: its engine id, what it is, and whether that came from an
        inspect (or a running one's last). None for a warm one, and for one removed between
        the list and its inspect."""
        name = (summary.get("Names") or ["/"])[0].lstrip("/")
        if name.startswith(self._warm.prefix):
            return None  # in the pool: no task's yet
        cid = summary["Id"]
        seen = self._running.get(cid)
        still_running = summary.get("State") == "running" and cid not in died
        if seen is not None and seen.name == name and still_running:
            return cid, seen, True
        if name in settled:
            return cid, listed(name, summary), False
        try:
            with engine_call(f"inspect {name}"):
                return cid, observed(api.inspect_container(cid)), True
        except ContainerGone:
            return None

    # --- starting --------------------------------------------------------------------------

    def run(self, spec: ContainerSpec) -> ObservedContainer:
        warm = self._warm.claim(spec)
        if warm is not None:
            started = self._run_warm(warm, spec)
            if started is not None:
                return started
        return self._run_cold(spec)

    def _run_cold(self, spec: ContainerSpec) -> ObservedContainer:
        api = self._engine.client().api
        arguments = create_args(
            api, spec, seccomp=self._seccomp, delivery_timeout=self._delivery_timeout
        )
        # A conflict: created by an earlier try of this very attempt, never started.
        with engine_call("create the container", conflict_ok=True, spec_at_fault=True):
            api.create_container(**arguments)
        crashpoint("after-create")
        try:
            with engine_call("start the container", spec_at_fault=True):
                api.start(spec.name)
                stdin = engine_wire.attach_stdin(api, spec.name)
                self._deliver(spec, stdin)
                attrs = api.inspect_container(spec.name)
        except ContainerGone as exc:
            # Removed behind our back between create and start: look again next pass.
            raise RuntimeUnavailable(f"the container vanished while starting: {exc}") from exc
        started = observed(attrs)
        if started.state == "running":
            self._running[attrs["Id"]] = started  # so the next list need not inspect it
        return started

    def _run_warm(self, warm: Warm[WarmKey], spec: ContainerSpec) -> ObservedContainer | None:
        """Fit a claimed warm container to the task, give it the attempt's name, deliver the
        code. None where it could not be fitted (it is discarded; the caller starts cold)."""
        if not self._warm.fit(warm, spec):
            return None
        # From here the container is the attempt's, under its name: what happens next is what
        # happens to a cold start (a lost payload ends it as "no code was delivered").
        crashpoint("after-claim")
        try:
            self._deliver(spec, warm.stdin)
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

    def _deliver(
        self, spec: ContainerSpec, stdin: tuple[socket.socket, Callable[[], None]]
    ) -> None:
        """Send the task's code. The container was created with stdin_once: closing this one
        attach closes its stdin, which tells the supervisor the input is complete. An
        interactive task's stays open, in the pump, for `send_input`."""
        raw, release = stdin
        payload = keyed(self._key(spec.name), spec.payload)
        send_payload(raw, release, payload, timeout=self._delivery_timeout)
        if spec.interactive:
            self._stdin.add(spec.name, raw, release)
        else:
            raw.close()
            release()

    def _key(self, name: str) -> bytes:
        # The instance id is never inside a container, so the task cannot work the key out.
        return frame_key(self._owner, name)

    # --- warm containers -------------------------------------------------------------------

    def keep_warm(self, wanted: list[tuple[ContainerSpec, int]]) -> None:
        self._warm.want(wanted)

    def warm_ready(self) -> int:
        """Warm containers ready to be claimed now."""
        return self._warm.ready()

    def close(self) -> None:
        self._warm.close()
        self._stdin.close()
        self._kills.shutdown(wait=True)
        self._removals.shutdown(wait=True)

    # --- stdin and output ------------------------------------------------------------------

    def send_input(self, name: str, data: bytes, *, eof: bool) -> InputResult:
        return self._stdin.offer(name, data, eof=eof)

    def _stdin_room(self) -> None:
        if self.on_stdin_room is not None:
            self.on_stdin_room()

    def follow(self, name: str) -> Iterator[tuple[str, bytes]]:
        return follow_frames(self._engine, name, self._key(name))

    def output(self, name: str) -> CapturedOutput:
        return captured_output(self._engine, name, self._key(name))

    # --- kills and removals ----------------------------------------------------------------

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
            # A conflict: it is not running any more.
            with engine_call(f"kill {name}", gone_ok=True, conflict_ok=True):
                self._engine.client().api.kill(name)
        except RuntimeUnavailable as exc:
            log.warning("%s; the next pass tries again", exc)
            return
        finally:
            with self._killing_lock:
                self._killing.discard(name)
        # Only once it has stopped: an EOF on its stdin before the kill would let the code go on.
        self._stdin.drop(name)

    def inspect(self, name: str) -> ObservedContainer | None:
        try:
            with engine_call(f"inspect {name}"):
                return observed(self._engine.client().api.inspect_container(name))
        except ContainerGone:
            return None

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
        # By name, without looking it up first: an inspect of a container that is still
        # exiting would wait for the engine's exit handling. A conflict: removal under way.
        with engine_call(f"remove {name}", gone_ok=True, conflict_ok=True):
            self._engine.client().api.remove_container(name, force=True)

    # --- events ----------------------------------------------------------------------------

    def wait_for_exit_events(self, on_exit: Callable[[], None], stop: threading.Event) -> None:
        """Call `on_exit()` whenever one of our containers dies, until `stop` is set; and when
        the engine is lost, after which everything is looked at again."""

        def died(container_id: str) -> None:
            with self._died_lock:
                self._died.add(container_id)
            on_exit()

        def lost() -> None:
            self._lost_engine()
            on_exit()

        follow_exits(self._engine, self._owner, on_die=died, on_lost=lost, stop=stop)
