"""`DockerRuntime` shared between threads: the events thread loses the engine (dropping the
client, the cached health and the warm pool) while the pass checks and uses them, and kills run
in the background.

A race is driven deterministically: the pass's call runs under a tracer that stops it at its
n-th bytecode in controller code and there runs the whole loss, as the events thread would if
it were scheduled then; every n is tried. The other way round, the loss is stopped at each of
its bytecodes while a whole pass call runs. Where the stopped side holds a lock the other needs,
the other waits for its release, as it would. The engine is a fake docker client.
"""

import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from functools import partial
from types import FrameType
from typing import Any

import pytest

from controller.docker_runtime import DockerRuntime
from controller.engine import EngineConnection
from controller.runtime import ATTEMPT_LABEL, OWNER_LABEL, TASK_LABEL, ContainerSpec, InputResult

MB = 1 << 20
TEMPLATE = ContainerSpec(
    name="",
    labels={},
    image="runner",
    cpus=(0,),
    all_cpus=(0, 1),
    cpu_quota=1.0,
    gpus=(),
    ram=64 * MB,
    storage=64 * MB,
    pids_limit=64,
    nofile_limit=64,
    payload=b"",
    log_limit=MB,
)
SPEC = replace(
    TEMPLATE,
    name="taskyard-owner-t1-1",
    labels={OWNER_LABEL: "owner", TASK_LABEL: "t1", ATTEMPT_LABEL: "1"},
    payload=b"print(1)",
)


class Attached:
    """What docker-py's attach_socket returns: a SocketIO over the socket."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def close(self) -> None:
        pass


class FakeAPI:
    """The low-level calls the runtime makes, on containers kept in a dict."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.containers_by_name: dict[str, dict[str, Any]] = {}
        self.far_ends: list[socket.socket] = []
        self.kills: list[str] = []
        self.kill_blocks: threading.Event | None = None

    def create_host_config(self, **settings: Any) -> dict[str, Any]:
        return settings

    def create_container(self, *, name: str, labels: dict[str, str], **_: Any) -> dict[str, str]:
        with self.lock:
            self.containers_by_name[name] = {
                "Id": f"id-{name}",
                "Labels": labels,
                "State": "created",
            }
        return {"Id": f"id-{name}"}

    def start(self, name: str) -> None:
        with self.lock:
            self.containers_by_name[name]["State"] = "running"

    def attach_socket(self, name: str, params: dict[str, int]) -> Attached:
        ours, theirs = socket.socketpair()
        with self.lock:
            self.far_ends.append(theirs)
        return Attached(ours)

    def inspect_container(self, name: str) -> dict[str, Any]:
        with self.lock:
            found = self.containers_by_name[name]
            return {
                "Id": found["Id"],
                "Name": f"/{name}",
                "Config": {"Labels": found["Labels"]},
                "State": {"Status": found["State"], "StartedAt": "2026-12-01T00:00:00.5Z"},
                "HostConfig": {},
            }

    def _url(self, pathfmt: str, *args: str) -> str:
        return pathfmt.format(*args)

    def _post_json(self, url: str, data: dict[str, Any]) -> None:
        assert url.endswith("/update") and data["NanoCpus"]

    def _raise_for_status(self, response: None) -> None:
        pass

    def rename(self, old: str, new: str) -> None:
        with self.lock:
            self.containers_by_name[new] = self.containers_by_name.pop(old)

    def remove_container(self, name: str, force: bool) -> None:
        with self.lock:
            self.containers_by_name.pop(name, None)

    def kill(self, name: str) -> None:
        with self.lock:
            self.kills.append(name)
        if self.kill_blocks is not None:
            self.kill_blocks.wait(timeout=10)

    def containers(self, all: bool, filters: dict[str, Any]) -> list[dict[str, Any]]:
        with self.lock:
            return [
                {"Id": c["Id"], "Names": [f"/{name}"], "Labels": c["Labels"], "State": c["State"]}
                for name, c in self.containers_by_name.items()
            ]

    def warm(self) -> list[str]:
        with self.lock:
            return [name for name in self.containers_by_name if "-warm-" in name]


class FakeClient:
    def __init__(self) -> None:
        self.api = FakeAPI()
        self.images = self

    def info(self) -> dict[str, str]:
        return {"ServerVersion": "27.0", "DockerRootDir": "/var/lib/docker"}

    def get(self, image: str) -> None:
        pass

    def list(self, filters: dict[str, str]) -> list[object]:
        return []  # no runtime image labelled: the default image alone runs python


@pytest.fixture
def fake() -> Iterator[FakeClient]:
    client = FakeClient()
    yield client
    for end in client.api.far_ends:
        end.close()


def runtime_on(fake: FakeClient) -> DockerRuntime:
    return DockerRuntime(
        "owner",
        "runner",
        engine=EngineConnection(connect=lambda: fake),  # reconnecting finds the same engine
        warm_max_idle_seconds=60,
    )


def wait_for(check: Callable[[], bool], what: str, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {within} s"
        time.sleep(0.005)


def with_warm(fake: FakeClient) -> DockerRuntime:
    runtime = runtime_on(fake)
    runtime.keep_warm([(TEMPLATE, 1)])
    wait_for(lambda: runtime.warm_ready() == 1, "a warm container")
    return runtime


def locks_of(runtime: DockerRuntime) -> list[threading.Lock]:
    return [runtime._engine._lock, runtime._warm._lock]


def preempted(
    call: Callable[[], object], at: int, other: Callable[[], object], locks: list[threading.Lock]
) -> tuple[object, int]:
    """`call()`'s result, with `other()` run whole at its `at`-th bytecode in controller code
    (or at the first after it where none of `locks` is held, or after it returned); and how
    many bytecodes it ran."""
    count = 0
    done = False

    def each_opcode(frame: FrameType, event: str, arg: object) -> Any:
        nonlocal count, done
        if event == "opcode":
            if not done and count >= at and not any(lock.locked() for lock in locks):
                done = True
                other()
            count += 1
        return each_opcode

    def on_call(frame: FrameType, event: str, arg: object) -> Any:
        if not frame.f_globals.get("__name__", "").startswith("controller."):
            return None
        frame.f_trace_opcodes = True
        return each_opcode

    sys.settrace(on_call)
    try:
        result = call()
    finally:
        sys.settrace(None)
    if not done:  # scheduled after the call's last bytecode
        other()
    return result, count


def bytecodes(call: Callable[[], object]) -> int:
    return preempted(call, sys.maxsize, lambda: None, [])[1]


def test_a_start_survives_losing_the_engine_at_any_point(fake: FakeClient) -> None:
    counted = with_warm(fake)
    total = bytecodes(lambda: counted.run(SPEC))
    counted.close()
    assert total > 100

    for at in range(total + 1):
        fake.api.containers_by_name.clear()
        runtime = with_warm(fake)
        try:
            started, _ = preempted(
                partial(runtime.run, SPEC), at, runtime._lost_engine, locks_of(runtime)
            )
            assert started is not None, at
            assert (started.name, started.state) == (SPEC.name, "running"), at
        finally:
            runtime.close()


def start(runtime: DockerRuntime, into: list[object]) -> None:
    into.append(runtime.run(SPEC))


def test_losing_the_engine_at_any_point_of_a_start_leaves_it_whole(fake: FakeClient) -> None:
    counted = with_warm(fake)
    total = bytecodes(counted._lost_engine)
    counted.close()

    for at in range(total + 1):
        fake.api.containers_by_name.clear()
        runtime = with_warm(fake)
        started: list[object] = []
        try:
            preempted(runtime._lost_engine, at, partial(start, runtime, started), locks_of(runtime))
            assert [getattr(s, "name", s) for s in started] == [SPEC.name], at
        finally:
            runtime.close()


@pytest.mark.parametrize("cached", [False, True], ids=["asking", "cached"])
def test_health_survives_losing_the_engine_at_any_point(fake: FakeClient, cached: bool) -> None:
    runtime = runtime_on(fake)
    try:
        total = bytecodes(runtime.health)
        for at in range(total + 1):
            if cached:
                runtime.health()
            health, _ = preempted(runtime.health, at, runtime._lost_engine, locks_of(runtime))
            assert getattr(health, "ok", None) is True, at
    finally:
        runtime.close()


@pytest.mark.parametrize("keep_first", [True, False], ids=["keep-warm-stopped", "loss-stopped"])
def test_a_pool_started_while_the_engine_is_lost_is_never_left_running(
    fake: FakeClient, keep_first: bool
) -> None:
    """Whichever is stopped halfway, no warm container is left once the runtime closes."""
    counted = runtime_on(fake)
    total = bytecodes(
        partial(counted.keep_warm, [(TEMPLATE, 1)]) if keep_first else counted._lost_engine
    )
    counted.close()
    wait_for(lambda: fake.api.warm() == [], "the warm containers removed")

    for at in range(total + 1):
        runtime = runtime_on(fake)
        keep, lose = partial(runtime.keep_warm, [(TEMPLATE, 1)]), runtime._lost_engine
        first, second = (keep, lose) if keep_first else (lose, keep)
        preempted(first, at, second, locks_of(runtime))
        runtime.close()
        wait_for(lambda: fake.api.warm() == [], f"the warm containers removed ({at})")


def test_a_kill_returns_at_once_and_closes_stdin_once_the_container_stopped(
    fake: FakeClient,
) -> None:
    runtime = runtime_on(fake)
    fake.api.kill_blocks = threading.Event()  # the engine answers once the container stopped
    try:
        runtime.run(replace(SPEC, interactive=True))

        began = time.monotonic()
        runtime.kill(SPEC.name)
        runtime.kill(SPEC.name)  # a second pass, while the first kill is under way
        returned_in = time.monotonic() - began
        wait_for(lambda: fake.api.kills == [SPEC.name], "the kill sent")

        assert returned_in < 1.0
        assert runtime.send_input(SPEC.name, b"x", eof=False) == InputResult.SENT
        fake.api.kill_blocks.set()
        wait_for(
            lambda: runtime.send_input(SPEC.name, b"x", eof=False) == InputResult.CLOSED,
            "stdin closed after the kill",
        )
        runtime.kill(SPEC.name)
        wait_for(lambda: fake.api.kills == [SPEC.name, SPEC.name], "a later kill sent again")
    finally:
        fake.api.kill_blocks.set()
        runtime.close()
