"""The small program that runs first inside every task container, and its report.

It arrives as a constant `python3 -I -c SOURCE` argument (no user data in argv, no shell). On the
container's stdin it reads a key line, then the task's code and stdin as framed JSON (for an
interactive task, whatever follows the frame is passed on to the code's stdin, live, until EOF).
It makes itself non-dumpable, so that the task, which runs as the same user, cannot read the key
from its memory or open its descriptors. It writes the code to `/work/main.py`, runs it, and
copies at most `limit` bytes of each output stream through, plus the first byte past the cap so
that a cut shows even without a report; it counts what it drops. When the code exits it ends the
container (a `setsid` grandchild cannot keep it alive), and writes a one-line report.

Everything it writes goes to the container's stdout as keyed lines, which `controller.frames`
describes and reads back; the report comes out of them after `MARKER` at the end of stderr,
where `parse_report` splits it off again.
"""

import json
from dataclasses import dataclass

MARKER = b"\x00\x1etaskyard-report:"

SOURCE = r'''
import base64, json, os, select, subprocess, sys, time
MARKER = b"\x00\x1etaskyard-report:"
KEY_CHARS, FLUSH, SLOW_FLUSH, FAST_LINES, FRAME = 32, 0.025, 1.0, 2000, 48 * 1024
HEX = set(b"0123456789abcdef")

def write_all(fd, data):
    while data:
        data = data[os.write(fd, data):]

class Out:
    """Keyed lines on our stdout: the task's output in batches, and the report."""
    key, lines = b"", 0
    held, order, size, since = {1: [], 2: []}, [], 0, None

    @classmethod
    def emit(cls, tag, body):
        write_all(1, cls.key + tag + body + b"\n")
        cls.lines += 1

    @classmethod
    def add(cls, out, data):
        if not cls.held[out]:
            cls.order.append(out)
        cls.held[out].append(data)
        cls.size += len(data)
        if cls.since is None:
            cls.since = time.monotonic()

    @classmethod
    def due(cls):
        """Seconds until the held output must be written (None: nothing held)."""
        if cls.since is None:
            return None
        if cls.size >= FRAME:
            return 0.0
        wait = FLUSH if cls.lines < FAST_LINES else SLOW_FLUSH
        return max(0.0, cls.since + wait - time.monotonic())

    @classmethod
    def flush(cls):
        for out in cls.order:
            cls.emit(b"o" if out == 1 else b"e", base64.b64encode(b"".join(cls.held[out])))
            cls.held[out] = []
        cls.order, cls.size, cls.since = [], 0, None

def report(**fields):
    body = json.dumps(fields).encode()
    if Out.key:
        Out.emit(b"r", body)
    else:  # no key came, so no code of the task's has run that could forge this line
        write_all(1, MARKER + body + b"\n")

# The container's memory cgroup (v1, v2): how many processes the kernel's OOM killer ended.
OOM_COUNTERS = ("/sys/fs/cgroup/memory/memory.oom_control", "/sys/fs/cgroup/memory.events")

def oom_kills():
    for path in OOM_COUNTERS:
        try:
            with open(path) as counters:
                for line in counters:
                    name, _, value = line.partition(" ")
                    if name == "oom_kill":
                        return int(value)
        except (OSError, ValueError):
            pass
    return 0

def hide():
    # Not dumpable: the task runs as the same user, but cannot open our /proc entries (our
    # memory, which holds the key, and our descriptors). Its own exec makes it dumpable again.
    try:
        import ctypes
        ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE
    except Exception:
        pass

def receive(wait):
    # b"<key>\n<length>\n" + JSON; whatever follows is live stdin.
    data, deadline = b"", time.monotonic() + wait
    while True:
        key, newline, rest = data.partition(b"\n")
        if newline and (len(key) != KEY_CHARS or not set(key) <= HEX):
            return b"", None, b""
        head, framed, rest = rest.partition(b"\n")
        if framed and head.isdigit() and len(rest) >= int(head):
            return key, rest[:int(head)], rest[int(head):]
        left = deadline - time.monotonic()
        if left <= 0:
            return (key if newline else b""), None, b""
        ready, _, _ = select.select([0], [], [], left)
        if ready:
            chunk = os.read(0, 1 << 20)
            if not chunk:
                return (key if newline else b""), None, b""
            data += chunk

# The interpreter that will run the task's code starts before the code arrives (its start-up
# is a good part of a short task's run); it waits on a pipe, then runs the code file as
# `python3 <file>` would: as __main__, with the file's name in tracebacks, argv and path.
LOADER = """
import os, sys
go, path = int(sys.argv[1]), sys.argv[2]
if os.read(go, 1) != b"g":
    os._exit(3)
os.close(go)
del go
sys.argv[:] = [path]
sys.path[0] = os.path.dirname(path)
import importlib.machinery
main = type(sys)("__main__")
main.__file__, main.__cached__ = path, None
main.__loader__ = importlib.machinery.SourceFileLoader("__main__", path)
main.__builtins__ = __builtins__
sys.modules["__main__"] = main
try:
    with open(path, "rb") as source:
        code = compile(source.read(), path, "exec", dont_inherit=True)
    del source, path
    exec(code, main.__dict__)
except SystemExit:
    raise
except BaseException as exc:
    exc = exc.with_traceback(exc.__traceback__.tb_next)  # without this loader's frame
    sys.excepthook(type(exc), exc, exc.__traceback__)
    sys.exit(1)
"""

def start_child():
    go_read, go_write = os.pipe()
    child = subprocess.Popen(
        [sys.executable, "-c", LOADER, str(go_read), "/work/main.py"], cwd="/work",
        pass_fds=(go_read,), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE)
    os.close(go_read)
    return child, go_write

def main():
    hide()
    child, go = start_child()
    key, raw, early_input = receive(float(sys.argv[1]) if len(sys.argv) > 1 else 10.0)
    if key:
        Out.key = key
        Out.emit(b"h", b"")  # from here on, a line without the key is not ours
    if not raw:
        child.kill()
        report(error="no code was delivered to the container")
        return 3
    job = json.loads(raw)
    limit = job["limit"]
    try:
        with open("/work/main.py", "w", encoding="utf-8") as f:
            f.write(job["code"])
    except OSError as exc:
        child.kill()
        report(error="could not write the code to the work area: %s" % exc)
        return 3
    os.write(go, b"g")  # the code is in place: run it
    os.close(go)
    pending_in = (job.get("stdin") or "").encode("utf-8")
    live_input = bool(job.get("interactive"))  # more stdin arrives on ours until EOF
    if live_input:
        pending_in += early_input
    if not pending_in and not live_input:
        child.stdin.close()
    streams = {child.stdout.fileno(): 1, child.stderr.fileno(): 2}
    seen = {1: 0, 2: 0}
    drain_until = None
    while streams:
        readers = list(streams) + ([0] if live_input else [])
        writers = [child.stdin] if pending_in and not child.stdin.closed else []
        # Wake now and then even when nothing is written: a silent grandchild holding the
        # pipes open must not hide that the code itself has exited.
        timeout = 0.1 if drain_until is None else max(0.0, drain_until - time.monotonic())
        due = Out.due()
        if due is not None:
            timeout = min(timeout, due)
        ready, writable, _ = select.select(readers, writers, [], timeout)
        if writable:
            try:
                sent = os.write(child.stdin.fileno(), pending_in[:65536])
                pending_in = pending_in[sent:]
            except OSError:
                pending_in, live_input = b"", False
            if not pending_in and not live_input:
                child.stdin.close()
        for fd in ready:
            if fd == 0:
                chunk = os.read(0, 65536)
                if chunk:
                    pending_in += chunk
                else:
                    live_input = False
                    if not pending_in and not child.stdin.closed:
                        child.stdin.close()
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                del streams[fd]
                continue
            out = streams[fd]
            # One byte past the cap is kept: it tells the controller the stream was cut,
            # even when the report never comes (the task is killed at its deadline).
            keep = max(0, min(len(chunk), limit + 1 - seen[out]))
            if keep:
                Out.add(out, chunk[:keep])
            seen[out] += len(chunk)
        if Out.due() == 0.0:
            Out.flush()
        if drain_until is not None and time.monotonic() >= drain_until:
            break
        if drain_until is None and child.poll() is not None:
            # The code has exited; whatever it left behind gets a moment to flush, no more.
            drain_until = time.monotonic() + 0.2
            live_input = False
    Out.flush()
    code = child.wait()
    exit_code = code if code >= 0 else 128 - code
    killed = {"signal": -code} if code < 0 else {}  # 137 alone may also be sys.exit(137)
    if code == -9:
        # The engine's own OOM flag races with the exit and is now and then missing (the OOM
        # event comes after the exit, containerd#8180); the cgroup's counter is already up
        # when the killed code's exit reaches us.
        killed["oom_kills"] = oom_kills()
    report(exit_code=exit_code, stdout_bytes=seen[1], stderr_bytes=seen[2],
           stdout_truncated=seen[1] > limit, stderr_truncated=seen[2] > limit, **killed)
    return exit_code

try:
    status = main()
except Exception as exc:
    Out.flush()
    report(error="the supervisor failed: %r" % (exc,))
    status = 3
sys.exit(status)
'''


@dataclass(frozen=True)
class Report:
    """What the supervisor said about the run, or `None` fields where it said nothing."""

    exit_code: int | None = None
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    error: str | None = None
    signal: int | None = None  # the signal that ended the code, where one did
    # SIGKILL ended the code and the kernel's OOM killer had killed in the container by then.
    oom_killed: bool = False


def build_payload(code: str, stdin: str | None, limit: int, *, interactive: bool = False) -> bytes:
    """The framed job for the supervisor: its length, a newline, then the JSON."""
    body = json.dumps(
        {"code": code, "stdin": stdin, "limit": limit, "interactive": interactive}
    ).encode("utf-8")
    return str(len(body)).encode() + b"\n" + body


def parse_report(stderr: bytes) -> tuple[bytes, Report | None]:
    """Split the supervisor's report off the end of stderr.

    No report means the supervisor itself was killed (a timeout, a cancellation, or the code
    killing it), and the container's exit code is all there is.
    """
    at = stderr.rfind(MARKER)
    if at < 0:
        return stderr, None
    line = stderr[at + len(MARKER):].split(b"\n", 1)[0]
    try:
        fields = json.loads(line)
    except ValueError:
        return stderr, None
    if not isinstance(fields, dict):
        return stderr, None
    report = Report(
        exit_code=fields.get("exit_code") if isinstance(fields.get("exit_code"), int) else None,
        stdout_truncated=bool(fields.get("stdout_truncated")),
        stderr_truncated=bool(fields.get("stderr_truncated")),
        error=str(fields["error"]) if "error" in fields else None,
        signal=fields["signal"] if isinstance(fields.get("signal"), int) else None,
        oom_killed=isinstance(fields.get("oom_kills"), int) and fields["oom_kills"] > 0,
    )
    return stderr[:at], report
