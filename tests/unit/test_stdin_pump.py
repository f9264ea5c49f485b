"""Stdin of interactive containers never blocks its caller (issue #14): the pump, and the Docker
runtime's delivery and `send_input`, over real socket pairs whose far end plays the container.
"""

import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from controller.docker_runtime import DockerRuntime
from controller.errors import StartRejected
from controller.runtime import ContainerSpec, InputResult
from controller.stdin_pump import BUFFER_BYTES, StdinPump

PIECE = b"x" * 65536
QUICK = 0.2  # seconds: what "at once" means here, on a loaded 2-core machine


class Attach:
    """Stands in for docker-py's attach object: only its close is called."""

    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


def spec(payload: bytes, *, interactive: bool = False) -> ContainerSpec:
    """Container "c", as far as delivering its code goes."""
    return ContainerSpec(
        name="c",
        labels={},
        image="image",
        cpus=(),
        all_cpus=(0,),
        cpu_quota=1.0,
        gpus=(),
        ram=64 << 20,
        storage=64 << 20,
        pids_limit=64,
        nofile_limit=64,
        payload=payload,
        log_limit=1 << 20,
        interactive=interactive,
    )


@pytest.fixture
def pump() -> Iterator[StdinPump]:
    pump = StdinPump()
    yield pump
    pump.close()


@pytest.fixture
def pairs() -> Iterator[Callable[[], tuple[socket.socket, socket.socket]]]:
    made: list[socket.socket] = []

    def pair() -> tuple[socket.socket, socket.socket]:
        ours, container = socket.socketpair()
        made.extend((ours, container))
        return ours, container

    yield pair
    for sock in made:
        sock.close()


def read_exactly(sock: socket.socket, size: int, timeout: float = 5.0) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def fill(pump: StdinPump, name: str) -> tuple[int, float]:
    """Offer pieces until the pump refuses one: the bytes taken, and the slowest offer."""
    taken, slowest = 0, 0.0
    for _ in range(1000):
        began = time.monotonic()
        result = pump.offer(name, PIECE, eof=False)
        slowest = max(slowest, time.monotonic() - began)
        if result == InputResult.FULL:
            return taken, slowest
        assert result == InputResult.SENT
        taken += len(PIECE)
    raise AssertionError("the pump never refused a piece")


def test_a_container_that_never_reads_is_full_at_once_and_others_still_flow(
    pump: StdinPump, pairs: Callable[[], tuple[socket.socket, socket.socket]]
) -> None:
    stuck, _never_read = pairs()
    flowing, reader = pairs()
    pump.add("stuck", stuck, Attach().close)
    pump.add("flowing", flowing, Attach().close)

    taken, slowest = fill(pump, "stuck")

    assert slowest < QUICK, f"an offer took {slowest:.3f} s"
    # Its buffer, and what the socket holds: bounded.
    assert BUFFER_BYTES <= taken <= BUFFER_BYTES + 4 * 1024 * 1024
    assert pump.offer("stuck", PIECE, eof=False) == InputResult.FULL  # still, and at once
    for number in range(8):
        assert pump.offer("flowing", b"line %d\n" % number, eof=False) == InputResult.SENT
    expected = b"".join(b"line %d\n" % number for number in range(8))
    assert read_exactly(reader, len(expected)) == expected


def test_eof_closes_the_stdin_once_everything_before_it_is_written(
    pump: StdinPump, pairs: Callable[[], tuple[socket.socket, socket.socket]]
) -> None:
    ours, container = pairs()
    attach = Attach()
    pump.add("c", ours, attach.close)

    assert pump.offer("c", PIECE * 4, eof=True) == InputResult.SENT
    assert pump.offer("c", b"late", eof=False) == InputResult.CLOSED

    assert read_exactly(container, len(PIECE) * 4 + 1) == PIECE * 4  # then EOF
    deadline = time.monotonic() + 5
    while not attach.closed and time.monotonic() < deadline:
        time.sleep(0.01)
    assert attach.closed


def test_dropping_a_full_stdin_frees_its_buffer_and_closes_it(
    pump: StdinPump, pairs: Callable[[], tuple[socket.socket, socket.socket]]
) -> None:
    ours, container = pairs()
    pump.add("c", ours, Attach().close)
    taken, _ = fill(pump, "c")

    pump.drop("c")

    assert pump.buffered("c") == 0
    assert pump.offer("c", b"more", eof=False) == InputResult.CLOSED
    # What reached the socket before the drop can be read, then the stdin ends.
    assert len(read_exactly(container, taken + 1)) < taken


def test_a_full_stdin_that_is_read_again_calls_for_another_offer(
    pairs: Callable[[], tuple[socket.socket, socket.socket]],
) -> None:
    room = threading.Event()
    pump = StdinPump(on_room=room.set)
    try:
        ours, container = pairs()
        pump.add("c", ours, Attach().close)
        taken, _ = fill(pump, "c")
        assert not room.is_set()

        read_exactly(container, taken)

        assert room.wait(5), "the pump did not say that the stdin has room again"
        assert pump.offer("c", PIECE, eof=False) == InputResult.SENT
    finally:
        pump.close()


def test_a_stdin_whose_container_went_away_is_closed(
    pump: StdinPump, pairs: Callable[[], tuple[socket.socket, socket.socket]]
) -> None:
    ours, container = pairs()
    pump.add("c", ours, Attach().close)
    container.close()

    deadline = time.monotonic() + 5
    while pump.offer("c", b"anyone?\n", eof=False) != InputResult.CLOSED:
        assert time.monotonic() < deadline, "the pump never noticed the stdin was gone"
        time.sleep(0.01)


# --- the Docker runtime --------------------------------------------------------------------


def in_thread(call: Callable[[], object], within: float) -> object:
    """`call()`'s result, failing the test where it does not return within `within` seconds
    (the thread is left blocked: the test's socket pairs unblock it when they close)."""
    box: list[object] = []
    thread = threading.Thread(target=lambda: box.append(call()), daemon=True)
    thread.start()
    thread.join(within)
    assert not thread.is_alive(), f"still blocked after {within} s"
    return box[0]


def test_send_input_of_the_docker_runtime_never_blocks(
    pairs: Callable[[], tuple[socket.socket, socket.socket]],
) -> None:
    runtime = DockerRuntime("owner", "image")
    try:
        ours, _never_read = pairs()
        # How the runtime keeps an interactive container's stdin: after delivering its code.
        runtime._deliver(spec(b"payload", interactive=True), (ours, Attach().close))

        results = in_thread(
            lambda: [runtime.send_input("c", PIECE, eof=False) for _ in range(64)], within=2.0
        )

        assert isinstance(results, list)
        assert results[0] == InputResult.SENT
        assert results[-1] == InputResult.FULL
        assert runtime.send_input("gone", b"x", eof=False) == InputResult.CLOSED
    finally:
        runtime.close()


def test_code_that_cannot_be_delivered_in_time_fails_the_start(
    pairs: Callable[[], tuple[socket.socket, socket.socket]],
) -> None:
    runtime = DockerRuntime("owner", "image", delivery_timeout=0.5)
    try:
        ours, _never_read = pairs()
        attach = Attach()
        began = time.monotonic()

        error = in_thread(
            lambda: _raised(lambda: runtime._deliver(spec(b"x" * (8 << 20)), (ours, attach.close))),
            within=5.0,
        )

        assert isinstance(error, StartRejected), error
        assert "did not take its code within 0.5 s" in str(error)
        assert time.monotonic() - began < 3.0
        assert attach.closed
    finally:
        runtime.close()


def _raised(call: Callable[[], object]) -> BaseException | None:
    try:
        call()
    except BaseException as exc:
        return exc
    return None
