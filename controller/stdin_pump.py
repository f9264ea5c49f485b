"""Live stdin of interactive containers, written by one thread so that no container that stops
reading its stdin can block the reconcile pass.

`DockerRuntime` owns one `StdinPump` and hands it each interactive container's attach socket
once the payload is delivered. `offer` never blocks: it takes a piece into the container's
bounded buffer (SENT), refuses it while the buffer is full (FULL: the pass offers the same piece
again later, so what waits stays in the database), or says the stdin is gone (CLOSED). The
thread writes the buffers out through non-blocking sockets as each becomes writable; after an
EOF it closes the socket once the buffer is drained, which closes the container's stdin.
"""

import contextlib
import logging
import selectors
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from controller.runtime import InputResult

log = logging.getLogger("taskyard.controller")

BUFFER_BYTES = 256 * 1024  # per container; a piece offered to an empty buffer always fits
WRITE_BYTES = 64 * 1024
_WOULD_BLOCK = (BlockingIOError, InterruptedError, ssl.SSLWantWriteError, ssl.SSLWantReadError)


@dataclass(eq=False)
class _Stdin:
    name: str
    sock: socket.socket
    release: Callable[[], None]  # closes what else holds the attach open (docker-py's response)
    buffer: bytearray = field(default_factory=bytearray)
    eof: bool = False
    refused: bool = False  # a piece was refused since the buffer last had room
    watched: bool = False  # registered with the selector (the pump thread's own business)


class StdinPump:
    """Buffers and writes the stdin of many containers from one thread, never blocking the
    caller. `on_room` is called (from the pump's thread) when a buffer that refused a piece
    has room again."""

    def __init__(
        self, *, on_room: Callable[[], None] | None = None, limit: int = BUFFER_BYTES
    ) -> None:
        self.on_room = on_room
        self._limit = limit
        self._lock = threading.Lock()
        self._open: dict[str, _Stdin] = {}
        self._retired: list[_Stdin] = []  # to close, in the pump's thread
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._wake_read, self._wake_write = socket.socketpair()
        self._wake_read.setblocking(False)
        self._wake_write.setblocking(False)

    def add(self, name: str, sock: socket.socket, release: Callable[[], None]) -> None:
        """Take over a container's stdin socket (the pump closes it)."""
        sock.setblocking(False)
        with self._lock:
            if self._stopping:
                sock.close()
                release()
                return
            old = self._open.pop(name, None)
            if old is not None:
                self._retired.append(old)
            self._open[name] = _Stdin(name, sock, release)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="taskyard-stdin", daemon=True
                )
                self._thread.start()
        self._wake()

    def offer(self, name: str, data: bytes, *, eof: bool) -> InputResult:
        """Take `data` (and then EOF, if `eof`) whole into the container's buffer, or refuse it."""
        with self._lock:
            stdin = self._open.get(name)
            if stdin is None or stdin.eof:
                return InputResult.CLOSED
            if stdin.buffer and len(stdin.buffer) + len(data) > self._limit:
                stdin.refused = True
                return InputResult.FULL
            stdin.buffer += data
            stdin.eof = eof
        self._wake()
        return InputResult.SENT

    def buffered(self, name: str) -> int:
        """Bytes taken for the container and not yet written to its socket."""
        with self._lock:
            stdin = self._open.get(name)
            return len(stdin.buffer) if stdin is not None else 0

    def drop(self, name: str) -> None:
        """Forget the container's stdin: its buffer goes, and its socket is closed."""
        with self._lock:
            stdin = self._open.pop(name, None)
            if stdin is None:
                return
            self._retired.append(stdin)
        self._wake()

    def close(self) -> None:
        """Close every stdin and stop the thread."""
        with self._lock:
            self._stopping = True
            self._retired += self._open.values()
            self._open.clear()
            thread = self._thread
        self._wake()
        if thread is not None:
            thread.join(timeout=2.0)
        else:
            self._close_retired(None)
        self._wake_read.close()
        self._wake_write.close()

    def _wake(self) -> None:
        # Full: the thread has wakes to read already. Closed: the pump has stopped.
        with contextlib.suppress(OSError):
            self._wake_write.send(b"\0")

    # --- the pump's thread -----------------------------------------------------------------

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self._wake_read, selectors.EVENT_READ)
        try:
            while True:
                self._close_retired(selector)
                with self._lock:
                    if self._stopping:
                        return
                    stdins = list(self._open.values())
                for stdin in stdins:  # watched for writing while it has something to write
                    busy = bool(stdin.buffer) or stdin.eof
                    if busy and not stdin.watched:
                        selector.register(stdin.sock, selectors.EVENT_WRITE, stdin)
                    elif stdin.watched and not busy:
                        selector.unregister(stdin.sock)
                    stdin.watched = busy
                for key, _ in selector.select():
                    if key.data is None:
                        self._drain_wakes()
                    else:
                        self._write(key.data)
        except Exception:
            log.exception("the stdin pump failed; interactive tasks' stdin is closed")
            with self._lock:
                self._stopping = True
                self._retired += self._open.values()
                self._open.clear()
        finally:
            self._close_retired(selector)
            selector.close()

    def _drain_wakes(self) -> None:
        with contextlib.suppress(OSError):  # BlockingIOError: drained
            while self._wake_read.recv(4096):
                pass

    def _write(self, stdin: _Stdin) -> None:
        with self._lock:
            if self._open.get(stdin.name) is not stdin:
                return  # dropped meanwhile; closed below, on the next turn
            piece = bytes(stdin.buffer[:WRITE_BYTES])
        sent = 0
        try:
            if piece:
                sent = stdin.sock.send(piece)
        except _WOULD_BLOCK:
            return
        except OSError as exc:
            log.info("stdin of %s is gone (%s); its buffered input is dropped", stdin.name, exc)
            self.drop(stdin.name)
            return
        room = False
        with self._lock:
            del stdin.buffer[:sent]
            if not stdin.buffer and stdin.eof and self._open.get(stdin.name) is stdin:
                del self._open[stdin.name]
                self._retired.append(stdin)
            if stdin.refused and len(stdin.buffer) <= self._limit // 2:
                stdin.refused, room = False, True
        if room and self.on_room is not None:
            self.on_room()

    def _close_retired(self, selector: selectors.BaseSelector | None) -> None:
        with self._lock:
            retired, self._retired = self._retired, []
        for stdin in retired:
            if stdin.watched and selector is not None:
                selector.unregister(stdin.sock)
            stdin.watched = False
            stdin.sock.close()
            with contextlib.suppress(OSError):
                stdin.release()
