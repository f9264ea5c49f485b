"""The small program that runs first inside every task container, and its report.

It arrives as a constant `python3 -I -c SOURCE` argument (no user data in argv, no shell). On the
container's stdin it reads a key line, then the task's code and stdin as framed JSON (for an
interactive task, whatever follows the frame is passed on to the code's stdin, live, until EOF,
with at most `INPUT_HELD` bytes held for a code that does not read). It copies at most `limit`
bytes of each output stream through, plus the first byte past the cap so that a cut shows even
without a report; it counts what it drops. When the code exits it ends the container (a `setsid`
grandchild cannot keep it alive), and writes a one-line report.

Why the task cannot reach this channel. The supervisor (and the engine's init, PID 1) run as
root with no capability but CAP_SETUID and CAP_SETGID; the task's interpreter is started as
`TASK_USER` with no groups, so the kernel clears every capability it had, and no-new-privileges
keeps it from gaining one. Across that uid boundary the task can neither signal, stop nor
`ptrace` the supervisor or PID 1, nor set their limits, nor open their `/proc/<pid>/fd/*`,
`mem` or `environ`: the container's stdin (which carries the key) and stdout (which carries the
keyed lines) are held only by root processes. The supervisor is also non-dumpable. The task's
interpreter receives its code over a pipe and writes `/work/main.py` itself, so that everything
under /work belongs to the task.

Everything the supervisor writes goes to the container's stdout as keyed lines, which
`sandbox.frames` describes and reads back. The report comes back apart from the task's
streams (never searched for in them, where the task could have written one), and `read_report`
checks every field of it, since a container's bytes are hostile input however they were made.
"""

import json
from dataclasses import dataclass

MARKER = b"\x00\x1etaskyard-report:"

SOURCE = r'''
import base64, json, os, select, subprocess, sys, time
MARKER = b"\x00\x1etaskyard-report:"
KEY_CHARS, FLUSH, SLOW_FLUSH, FAST_LINES, FRAME = 32, 0.025, 1.0, 2000, 48 * 1024
HEX = set(b"0123456789abcdef")
TASK_USER = 65534  # the uid and gid the task's code runs as; None: as the supervisor does
INPUT_HELD = 1 << 20  # live stdin held for a code that does not read: past it, ours waits

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
    # Not dumpable, besides running as another user than the task: a second reason why our
    # /proc entries (our memory, which holds the key, and our descriptors) stay closed to it.
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
# is a good part of a short task's run), as the task's user. It reads the code from a pipe,
# writes it to its file, closes the pipe on which it would tell us that it could not, and then
# runs the file as `python3 <file>` would: as __main__, with its name in tracebacks, argv, path.
LOADER = """
import os, sys
go, said, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
chunks = []
while True:
    chunk = os.read(go, 1 << 20)
    if not chunk:
        break
    chunks.append(chunk)
os.close(go)
code = b"".join(chunks)
if code[:1] != b"g":
    os._exit(3)
try:
    with open(path, "wb") as source:
        source.write(code[1:])
except OSError as exc:
    os.write(said, ("could not write the code to the work area: %s" % exc.strerror).encode())
    os._exit(3)
os.close(said)
del go, said, chunks, chunk, code
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
    said_read, said_write = os.pipe()
    user = {} if TASK_USER is None else {
        "user": TASK_USER, "group": TASK_USER, "extra_groups": []}
    child = subprocess.Popen(
        [sys.executable, "-c", LOADER, str(go_read), str(said_write), "/work/main.py"],
        cwd="/work", pass_fds=(go_read, said_write), stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, **user)
    os.close(go_read)
    os.close(said_write)
    os.set_blocking(said_read, False)
    return child, go_write, said_read

def hand_over(go, code):
    """The code to the waiting interpreter; False if it is gone."""
    try:
        write_all(go, b"g" + code.encode("utf-8"))
        return True
    except OSError:
        return False
    finally:
        os.close(go)

def could_not_start(said):
    """What the interpreter said went wrong before the code ran, or None."""
    try:
        words = os.read(said, 4096)
    except OSError:
        words = b""
    os.close(said)
    return words.decode("utf-8", "replace") or None

def main():
    hide()
    child, go, said = start_child()
    key, raw, early_input = receive(float(sys.argv[1]) if len(sys.argv) > 1 else 10.0)
    if key:
        Out.key = key
        Out.emit(b"h", b"")  # from here on, a line without the key is not ours
    if not raw:
        os.close(go)  # the interpreter reads no code, and ends
        report(error="no code was delivered to the container", undelivered=True)
        return 3
    job = json.loads(raw)
    limit = job["limit"]
    hand_over(go, job["code"])  # the code may run from here on
    pending_in = (job.get("stdin") or "").encode("utf-8")
    live_input = bool(job.get("interactive"))  # more stdin arrives on ours until EOF
    if live_input:
        pending_in += early_input
    if not pending_in and not live_input:
        child.stdin.close()
    else:
        # A code that does not read must not hold us up: a write takes what fits.
        os.set_blocking(child.stdin.fileno(), False)
    streams = {child.stdout.fileno(): 1, child.stderr.fileno(): 2}
    seen = {1: 0, 2: 0}
    drain_until = None
    while streams:
        # A code that does not read its stdin gets INPUT_HELD bytes held for it, then ours
        # is left unread, and whoever writes to it waits.
        readers = list(streams) + ([0] if live_input and len(pending_in) < INPUT_HELD else [])
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
            except BlockingIOError:
                pass
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
    failed = could_not_start(said)
    if failed is not None:
        report(error=failed)
        return 3
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


# What a report may hold. The supervisor's own lines are far below these; anything beyond them
# was not written by it, and a container's bytes are hostile input however they were made.
REPORT_MAX_BYTES = 4096
ERROR_MAX_CHARS = 500
EXIT_CODES = range(256)
SIGNALS = range(1, 65)


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
    # No code reached the container: it never ran, so a new attempt may run it.
    undelivered: bool = False


def _int_in(value: object, allowed: range) -> int | None:
    # bool is an int to Python, and not a number to us.
    if type(value) is int and value in allowed:
        return value
    return None


def read_report(line: bytes) -> Report:
    """The supervisor's report line, its fields checked one by one: each that is missing or out
    of shape is left out, and a line that is not a JSON object of bounded size says only that."""
    unreadable = Report(error="the supervisor's report could not be read")
    if len(line) > REPORT_MAX_BYTES:
        return unreadable
    try:
        fields = json.loads(line)
    except ValueError:
        return unreadable
    if not isinstance(fields, dict):
        return unreadable
    error = fields.get("error")
    if error is not None:
        error = str(error) if isinstance(error, str) else "the supervisor failed"
        if len(error) > ERROR_MAX_CHARS:
            error = error[:ERROR_MAX_CHARS] + "…"
    oom_kills = _int_in(fields.get("oom_kills"), range(1 << 31))
    return Report(
        exit_code=_int_in(fields.get("exit_code"), EXIT_CODES),
        stdout_truncated=fields.get("stdout_truncated") is True,
        stderr_truncated=fields.get("stderr_truncated") is True,
        error=error,
        signal=_int_in(fields.get("signal"), SIGNALS),
        oom_killed=oom_kills is not None and oom_kills > 0,
        undelivered=error is not None and fields.get("undelivered") is True,
    )


def build_payload(code: str, stdin: str | None, limit: int, *, interactive: bool = False) -> bytes:
    """The framed job for the supervisor: its length, a newline, then the JSON."""
    body = json.dumps(
        {"code": code, "stdin": stdin, "limit": limit, "interactive": interactive}
    ).encode("utf-8")
    return str(len(body)).encode() + b"\n" + body
