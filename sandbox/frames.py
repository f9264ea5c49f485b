"""The keyed lines in which the supervisor writes a task's output, and how the controller reads
them back (`DockerRuntime.follow` and `output`).

Every line on the container's stdout is `<key><tag><body>\n`:
- `o` / `e`: base64 of the task's stdout / stderr bytes. The engine's json-file log driver stores
  each line as a JSON string and turns bytes that are not UTF-8 into U+FFFD, one per byte;
  base64 passes through unharmed, so the controller gets back exactly the bytes the task wrote.
- `r`: the supervisor's report, JSON. `FrameDecoder` hands it on as a piece of its own, never
  mixed into the task's streams.
- `h`: the first line, written before the code starts.
- `f` / `d`: a file collected after the run: `f` is base64 of its JSON header (name, size),
  the `d` lines that follow are base64 of its bytes. `FileAssembler` puts them together,
  within the bounds the controller asked for whatever the lines say.

The key is `frame_key(instance id, container name)`: the instance id is never inside a
container. The container's stdin and stdout are held only by root processes that the task,
running as another user, cannot open through `/proc` (`sandbox.supervisor` says why), so it
can neither read the key nor write a line; were it ever to reach the stdout, `FrameDecoder`
would drop whatever lacks the key. The supervisor batches output for
`FLUSH_SECONDS`, so that a flood of tiny writes becomes a few lines, which keeps the engine's
log within `log_budget`. The numbers here are repeated in the supervisor's SOURCE, which runs
alone in the container.
"""

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass

from sandbox.supervisor import MARKER, Report, read_report

KEY_CHARS = 32
FLUSH_SECONDS = 0.025  # while fewer than FAST_LINES lines have been written
SLOW_FLUSH_SECONDS = 1.0  # after that: a task that prints a little all the time
FAST_LINES = 2000
FRAME_BYTES = 48 * 1024  # a batch this large is written at once
MAX_LINE = 256 * 1024  # longer than any line of ours: the rest of such a line is dropped
# The most collected files a reader keeps from one container, whatever the task asked: the
# controller cuts them down to the task's own bounds when it stores them.
READ_FILES = 1000
READ_FILE_BYTES = 64 * 1024 * 1024


# The stream name of the supervisor's report among the (stream, bytes) pieces `follow` yields.
REPORT = "report"
# The stream names of a collected file's header (JSON) and of its bytes.
FILE = "file"
FILE_DATA = "file_data"


def keyed(key: bytes, payload: bytes) -> bytes:
    """What the supervisor reads on stdin: the key of its output lines, then the payload."""
    return key + b"\n" + payload


def frame_key(secret: str, name: str) -> bytes:
    """The key of one container's output lines: only who knows `secret` can tell it."""
    digest = hmac.new(secret.encode(), name.encode(), hashlib.sha256).hexdigest()
    return digest[:KEY_CHARS].encode()


def log_budget(
    limit: int, timeout_seconds: float, *, collect_files: int = 0, collect_bytes: int = 0
) -> int:
    """The size the engine's json-file log of one container can reach, with room to spare.

    Each stream's `limit` + 1 bytes grow by a third in base64, every line carries the key and
    a tag, and the engine stores each line, and each 16 KiB piece of a longer one, as a JSON
    object of about 90 bytes. The number of lines is bounded by the flush timer: fast for
    `FAST_LINES` lines, then one per stream per `SLOW_FLUSH_SECONDS` for the task's whole
    run (its timeout, plus a minute for the kill). Collected files come after, in base64 too:
    a header line each, and a line per `FRAME_BYTES` of their bytes."""
    encoded = 2 * 4 * ((limit + 1 + 2) // 3) + 4 * ((collect_bytes + 2) // 3)
    lines = (
        FAST_LINES
        + 2 * (timeout_seconds + 60) / SLOW_FLUSH_SECONDS
        + 2 * (2 * limit // FRAME_BYTES + 1)
        + 2 * collect_files
        + collect_bytes // FRAME_BYTES
        + 4
    )
    per_line = KEY_CHARS + 2 + 96
    pieces = encoded // (16 * 1024) + 2
    return int(encoded + lines * per_line + pieces * 96 + 64 * 1024)


class FrameDecoder:
    """Reads the supervisor's keyed lines (the container's stdout, as the engine returns it)
    back into `(stream, raw bytes)` pieces.

    The report comes out as a piece of its own (stream `REPORT`, its JSON line): only the
    supervisor can write one, and nothing follows it. What does not carry the key was not
    written by the supervisor (the task cannot reach the container's stdout, but were it ever
    to) and is dropped, also where it runs into the start of one of our lines: a line starts
    where the key does. Only before the first keyed line is a bare report accepted: the one the
    supervisor writes when no key reached it, before any code of the task's has run."""

    def __init__(self, key: bytes) -> None:
        self._key = key
        self._line = bytearray()
        self._trimmed = False  # the start of the current line was dropped
        self._keyed = False
        self.dropped = 0  # bytes that were not the supervisor's

    def feed(self, data: bytes) -> list[tuple[str, bytes]]:
        pieces: list[tuple[str, bytes]] = []
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                self._extend(data[start:])
                return pieces
            self._extend(data[start:end])
            pieces.extend(self._read(bytes(self._line), final=True))
            self._line.clear()
            self._trimmed = False
            start = end + 1

    def close(self) -> list[tuple[str, bytes]]:
        """The end of a line cut short (a kill in the middle of a write), as far as it goes."""
        pieces = self._read(bytes(self._line), final=False)
        self._line.clear()
        self._trimmed = False
        return pieces

    def _extend(self, data: bytes) -> None:
        self._line += data
        if len(self._line) <= MAX_LINE:
            return
        # Longer than any line of ours: keep only what may still be one, from its key on (or
        # the few last bytes, which may be the start of a key).
        at = self._line.rfind(self._key)
        if at <= 0 or len(self._line) - at > MAX_LINE:
            at = len(self._line) - (len(self._key) - 1)
        self.dropped += at
        del self._line[:at]
        self._trimmed = True

    def _read(self, line: bytes, *, final: bool) -> list[tuple[str, bytes]]:
        at = line.find(self._key)
        if at < 0:
            if final and not self._keyed and not self._trimmed and line.startswith(MARKER):
                return [(REPORT, line[len(MARKER) :])]
            self.dropped += len(line)
            return []
        self.dropped += at
        self._keyed = True
        start = at + len(self._key)
        tag, body = line[start : start + 1], line[start + 1 :]
        if tag == b"r":
            return [(REPORT, body)] if final else []
        if tag not in _STREAMS or (not final and tag in (b"f", b"d")):
            return []
        if not final:
            body = body[: len(body) // 4 * 4]
        try:
            data = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            self.dropped += len(line) - at
            return []
        return [(_STREAMS[tag], data)] if data else []


_STREAMS = {b"o": "stdout", b"e": "stderr", b"f": FILE, b"d": FILE_DATA}


@dataclass(frozen=True)
class CollectedFile:
    name: str  # relative to the work area
    content: bytes


class FileAssembler:
    """Collected files from their `FILE` and `FILE_DATA` pieces, at most `max_files` of them
    and `max_bytes` in all: a file that breaks a bound, or whose bytes do not match its
    header's size, is left out and `truncated` says so."""

    def __init__(self, max_files: int, max_bytes: int) -> None:
        self.files: list[CollectedFile] = []
        self.truncated = False
        self._max_files, self._left = max_files, max_bytes
        self._name: str | None = None
        self._size = 0
        self._data = bytearray()

    def add(self, stream: str, data: bytes) -> None:
        if stream == FILE:
            self._close()
            self._open(data)
        elif stream == FILE_DATA and self._name is not None:
            if len(self._data) + len(data) > self._size:
                self._name, self.truncated = None, True
            else:
                self._data += data

    def finish(self) -> "FileAssembler":
        self._close()
        return self

    def _open(self, header: bytes) -> None:
        try:
            fields = json.loads(header)
            name, size = fields["name"], fields["size"]
        except (ValueError, TypeError, KeyError):
            self.truncated = True
            return
        if not (isinstance(name, str) and type(size) is int and 0 <= size <= self._left):
            self.truncated = True
            return
        if len(self.files) >= self._max_files or not _plain_name(name):
            self.truncated = True
            return
        self._name, self._size = name, size
        self._data = bytearray()

    def _close(self) -> None:
        if self._name is None:
            return
        if len(self._data) == self._size:
            self.files.append(CollectedFile(self._name, bytes(self._data)))
            self._left -= self._size
        else:
            self.truncated = True
        self._name = None


def _plain_name(name: str) -> bool:
    parts = name.split("/")
    return (
        0 < len(name) <= 1024
        and all(part not in ("", ".", "..") for part in parts)
        and not any(ord(char) < 32 or char == "\x7f" for char in name)
    )


def decode_output(key: bytes, framed: bytes) -> tuple[bytes, bytes, Report | None]:
    """The task's stdout and stderr, and the supervisor's report, from the whole log."""
    stdout, stderr, report, _ = decode_run(key, framed)
    return stdout, stderr, report


def decode_run(
    key: bytes, framed: bytes, *, max_files: int = READ_FILES, max_bytes: int = READ_FILE_BYTES
) -> tuple[bytes, bytes, Report | None, FileAssembler]:
    """As `decode_output`, and the files collected after the run, within those bounds."""
    decoder = FrameDecoder(key)
    streams: dict[str, list[bytes]] = {"stdout": [], "stderr": []}
    files = FileAssembler(max_files, max_bytes)
    report: Report | None = None
    for stream, data in [*decoder.feed(framed), *decoder.close()]:
        if stream == REPORT:
            report = report or read_report(data)
        elif stream in streams:
            streams[stream].append(data)
        else:
            files.add(stream, data)
    return b"".join(streams["stdout"]), b"".join(streams["stderr"]), report, files.finish()
