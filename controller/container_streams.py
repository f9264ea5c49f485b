"""A container's streams: the task's code written to its stdin, the supervisor's frames read
back from its stdout.

The supervisor writes everything (the task's stdout and stderr, its report) as keyed frames on
the container's stdout (`sandbox.frames`); what the container writes on its stderr is not the
supervisor's, and is never asked for. Called by `controller.docker_runtime`.
"""

import socket
from collections.abc import Callable, Iterator

from controller.engine import EngineConnection
from controller.engine_errors import engine_call
from controller.errors import ContainerGone, StartRejected
from controller.runtime import CapturedOutput
from sandbox.frames import FrameDecoder, decode_run


def send_payload(
    raw: socket.socket, release: Callable[[], None], payload: bytes, *, timeout: float
) -> None:
    """Write the payload whole, within `timeout` seconds (the supervisor gives up waiting for
    it then too). Where it fails the attach is closed: StartRejected on the timeout, OSError
    otherwise; on success it is left open for the caller."""
    raw.settimeout(timeout)
    try:
        raw.sendall(payload)
    except OSError as exc:
        raw.close()
        release()
        if isinstance(exc, TimeoutError):
            raise StartRejected(
                f"the container did not take its code within {timeout:g} s"
            ) from exc
        raise


def follow_frames(engine: EngineConnection, name: str, key: bytes) -> Iterator[tuple[str, bytes]]:
    """(stream, bytes) from the container's frames, from its start until it stops or the
    caller closes the iterator. A container that is gone ends it."""
    decoder = FrameDecoder(key)
    try:
        with engine_call(f"follow {name}"):
            # The log file, followed: unlike attach(logs=True), which reads the log and only
            # then subscribes, it has no gap. docker-py's reader lifts the client's timeout, as
            # a task may print nothing for longer.
            stream = engine.client().api.logs(
                name, stdout=True, stderr=False, follow=True, stream=True
            )
            try:
                for data in stream:
                    yield from decoder.feed(data)
            finally:  # also when the reader stops early, at the supervisor's report
                stream.close()
    except ContainerGone:
        pass
    yield from decoder.close()


def captured_output(engine: EngineConnection, name: str, key: bytes) -> CapturedOutput:
    """Everything the container's code printed so far; nothing where the container is gone."""
    try:
        with engine_call(f"read the output of {name}"):
            framed = engine.client().api.logs(name, stdout=True, stderr=False)
    except ContainerGone:
        return CapturedOutput(b"", b"")
    stdout, stderr, report, files = decode_run(key, framed)
    return CapturedOutput(stdout, stderr, report, tuple(files.files), files.truncated)
