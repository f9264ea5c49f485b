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

import base64
import json
from dataclasses import dataclass

MARKER = b"\x00\x1etaskyard-report:"

SOURCE = r'''
import base64, json, os, select, signal, subprocess, sys, time
MARKER = b"\x00\x1etaskyard-report:"
KEY_CHARS, FLUSH, SLOW_FLUSH, FAST_LINES, FRAME = 32, 0.025, 1.0, 2000, 48 * 1024
HEX = set(b"0123456789abcdef")
TASK_USER = 65534  # the uid and gid the task's code runs as; None: as the supervisor does
INPUT_HELD = 1 << 20  # live stdin held for a code that does not read: past it, ours waits
WORK = "/work"  # the task's work area, its only writable place besides /dev/shm
LOADER_JOB = ("main", "code", "files", "env", "run", "args", "compile", "python")

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

# What the run cost, from the container's own cgroup (v1, v2): every process in it counts.
CPU_COUNTERS = ("/sys/fs/cgroup/cpuacct/cpuacct.usage", "/sys/fs/cgroup/cpu,cpuacct/cpuacct.usage")
CPU_STAT = "/sys/fs/cgroup/cpu.stat"
PEAK_COUNTERS = ("/sys/fs/cgroup/memory/memory.max_usage_in_bytes", "/sys/fs/cgroup/memory.peak")

def first_int(paths):
    for path in paths:
        try:
            with open(path) as counter:
                return int(counter.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return None

def usage(wall):
    cpu_ns = first_int(CPU_COUNTERS)
    if cpu_ns is None:
        try:
            with open(CPU_STAT) as stat:
                fields = dict(line.split() for line in stat if line.strip())
            cpu_ns = int(fields["usage_usec"]) * 1000
        except (OSError, ValueError, KeyError):
            pass
    import resource
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = cpu_ns / 1e9 if cpu_ns is not None else children.ru_utime + children.ru_stime
    peak = first_int(PEAK_COUNTERS)
    if peak is None:  # a sandbox without those counters: the largest process's peak
        peak = children.ru_maxrss * 1024
    return {"wall_seconds": round(wall, 6), "cpu_seconds": round(cpu, 6), "peak_memory_bytes": peak}

def as_task_user():
    """In a forked child: become the task's user, with no groups and no capability."""
    if TASK_USER is not None:
        os.setgroups([])
        os.setgid(TASK_USER)
        os.setuid(TASK_USER)

def task_processes():
    if TASK_USER is None:
        return []
    found = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and os.stat("/proc/" + entry).st_uid == TASK_USER:
                found.append(int(entry))
        except OSError:
            pass
    return found

def end_task_processes():
    """Kill every process of the task's user, so that nothing changes the work area while it
    is collected; False where some survive. A process of that user may signal all of them,
    and kill(-1) reaches every one (a fork under way fails on the pending SIGKILL)."""
    if TASK_USER is None:  # the tests' supervisor: the code ran as ourselves
        return True
    import signal
    for _ in range(10):
        pid = os.fork()
        if pid == 0:
            try:
                as_task_user()
                os.kill(-1, signal.SIGKILL)
            except OSError:
                pass
            os._exit(0)
        os.waitpid(pid, 0)
        if not task_processes():
            return True
        time.sleep(0.01)
    return False

def glob_pattern(glob):
    """`*` and `?` within a name, `**` across directories; a name that starts with "." only
    where the pattern spells the dot, as a shell's glob."""
    import re
    parts, out = glob.split("/"), ""
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        if part == "**":
            out += r"(?!\.)[^/]+(?:/(?!\.)[^/]+)*" if last else r"(?:(?!\.)[^/]+/)*"
            continue
        out += "" if part.startswith(".") else r"(?!\.)"
        for char in part:
            out += "[^/]*" if char == "*" else "[^/]" if char == "?" else re.escape(char)
        out += "" if last else "/"
    return re.compile(out + r"\Z", re.S)

def work_files(limit=10000):
    """Relative paths of the regular files under WORK, no link followed, at most `limit`."""
    found, todo, seen = [], [""], 0
    while todo and seen < limit:
        rel = todo.pop()
        try:
            entries = list(os.scandir(os.path.join(WORK, rel)))
        except OSError:
            continue
        for entry in sorted(entries, key=lambda e: e.name):
            seen += 1
            path = rel + entry.name
            if entry.is_dir(follow_symlinks=False):
                todo.append(path + "/")
            elif entry.is_file(follow_symlinks=False):
                found.append(path)
    return sorted(found)

def collect(globs, max_files, max_bytes):
    """The files under WORK that match `globs`, as keyed lines: `f` (name and size), then `d`
    (their bytes, in pieces). Read as the task's user, never through a link. Returns how many
    came and whether some were left out (by count or size)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        status = 2
        try:
            as_task_user()
            status = send_files(globs, max_files, max_bytes, write)
        finally:
            os._exit(status)
    os.close(write)
    counted = os.read(read, 64)
    os.close(read)
    _, status = os.waitpid(pid, 0)
    sent = int(counted) if counted.isdigit() else 0
    return sent, os.waitstatus_to_exitcode(status) != 0

def send_files(globs, max_files, max_bytes, counted):
    import stat
    patterns = [glob_pattern(glob) for glob in globs]
    names = [name for name in work_files() if any(p.match(name) for p in patterns)]
    sent, left, cut = 0, max_bytes, False
    for name in names:
        if sent == max_files:
            cut = True
            break
        try:
            fd = os.open(os.path.join(WORK, name), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            continue
        with open(fd, "rb") as source:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                continue
            data = source.read(left + 1)
        if len(data) > left:  # too large for what is left: the next may still fit
            cut = True
            continue
        left -= len(data)
        sent += 1
        head = json.dumps({"name": name, "size": len(data)}).encode()
        Out.emit(b"f", base64.b64encode(head))
        for at in range(0, len(data), FRAME):
            Out.emit(b"d", base64.b64encode(data[at:at + FRAME]))
    os.write(counted, str(sent).encode())
    return 1 if cut else 0

class Stop:
    """Why the code was ended before it exited by itself: its deadline passed ("timed_out"),
    or the controller asked with SIGTERM ("stopped"). Either way its files are still collected
    and the report still written."""
    why = None
    asked = False

def on_term(signum, frame):
    Stop.asked = True

def end_code(child):
    if TASK_USER is None:  # the tests' supervisor: the code's processes are ours
        child.kill()
    else:
        end_task_processes()

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
# is a good part of a short task's run), as the task's user. It reads the job from a pipe,
# writes the task's files and code, compiles where the runtime does, closes the pipe on which
# it would tell us what failed, and then runs the main file: a Python one in this interpreter,
# as `python3 <file>` would (as __main__, with its name in tracebacks, argv, path), any other
# by exec of the runtime's command. Everything under WORK is written by the task's user.
LOADER = """
import os, sys
go, said, work = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
chunks = []
while True:
    chunk = os.read(go, 1 << 20)
    if not chunk:
        break
    chunks.append(chunk)
os.close(go)
data = b"".join(chunks)
if data[:1] != b"g":
    os._exit(3)
import json
job = json.loads(data[1:])
del go, chunks, chunk, data

def fail(words, status=3):
    os.write(said, words.encode("utf-8", "replace"))
    os._exit(status)

def put(name, content, what):
    # Names were checked by the API: relative, no "..", no control characters. O_EXCL and
    # O_NOFOLLOW: nothing here follows or replaces what is already there.
    path = os.path.join(work, name)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with open(fd, "wb") as out:
            out.write(content)
    except OSError as exc:
        fail("could not write %s to the work area: %s" % (what, exc.strerror))

if job["files"]:
    import base64
    for name, content in job["files"]:
        put(name, base64.b64decode(content), name)
put(job["main"], job["code"].encode("utf-8"), "the code")
os.environ.update(job["env"])
argv = job["run"] + job["args"]
if job["compile"]:
    import subprocess
    try:  # the compiler's messages go to stderr, where a failed compile's result comes from
        compiled = subprocess.run(job["compile"], cwd=work, stdin=subprocess.DEVNULL, stdout=2)
    except OSError as exc:
        fail("could not start the compiler: %s" % exc.strerror)
    if compiled.returncode != 0:
        fail("\\x01compile %d" % (compiled.returncode & 255), 1)
os.close(said)
if not job["python"]:
    del job, said
    try:
        os.execvp(argv[0], argv)
    except OSError as exc:
        os.write(2, ("could not run %s: %s\\n" % (argv[0], exc.strerror)).encode())
        os._exit(127)
path, args = os.path.join(work, job["main"]), job["args"]
del job, said, argv
sys.argv[:] = [path] + args
del args
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
        [sys.executable, "-c", LOADER, str(go_read), str(said_write), WORK],
        cwd=WORK, pass_fds=(go_read, said_write), stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, **user)
    os.close(go_read)
    os.close(said_write)
    os.set_blocking(said_read, False)
    return child, go_write, said_read

def hand_over(go, job):
    """The job to the waiting interpreter; False if it is gone."""
    try:
        write_all(go, b"g" + json.dumps(job).encode("utf-8"))
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
    signal.signal(signal.SIGTERM, on_term)
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
    started = time.monotonic()
    deadline = started + job["deadline"] if job.get("deadline") else None
    hand_over(go, {name: job[name] for name in LOADER_JOB})  # the code may run from here on
    seen = pump(child, job, early_input, deadline)
    Out.flush()
    code = child.wait()
    wall = time.monotonic() - started
    failed = could_not_start(said)
    compiled = failed is None or not failed.startswith("\x01compile ")
    if not compiled:
        failed = None
    if failed is not None:
        report(error=failed)
        return 3
    files = None
    if job["collect"]:
        # Nothing of the task's may still run and change the work area while it is read.
        files = (0, True)
        if end_task_processes():
            files = collect(job["collect"], job["collect_files"], job["collect_bytes"])
    exit_code = code if code >= 0 else 128 - code
    extra = {"signal": -code} if code < 0 else {}  # 137 alone may also be sys.exit(137)
    if code == -9:
        # The engine's own OOM flag races with the exit and is now and then missing (the OOM
        # event comes after the exit, containerd#8180); the cgroup's counter is already up
        # when the killed code's exit reaches us.
        extra["oom_kills"] = oom_kills()
    if not compiled:
        extra["compile_failed"] = True
    if Stop.why is not None:
        extra[Stop.why] = True
    if files is not None:
        extra["files"], extra["files_truncated"] = files
    limit = job["limit"]
    report(exit_code=exit_code, stdout_bytes=seen[1], stderr_bytes=seen[2],
           stdout_truncated=seen[1] > limit, stderr_truncated=seen[2] > limit,
           usage=usage(wall), **extra)
    return exit_code

def pump(child, job, early_input, deadline):
    """Pass stdin to the code and copy its output through, until it has exited and its
    streams are drained (or a moment after the exit, past which a grandchild holds them)."""
    limit = job["limit"]
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
        if Stop.why is None and drain_until is None:
            if Stop.asked:
                Stop.why = "stopped"
            elif deadline is not None and time.monotonic() >= deadline:
                Stop.why = "timed_out"
            if Stop.why is not None:
                end_code(child)
        # A code that does not read its stdin gets INPUT_HELD bytes held for it, then ours
        # is left unread, and whoever writes to it waits.
        readers = list(streams) + ([0] if live_input and len(pending_in) < INPUT_HELD else [])
        writers = [child.stdin] if pending_in and not child.stdin.closed else []
        # Wake now and then even when nothing is written: a silent grandchild holding the
        # pipes open must not hide that the code itself has exited.
        timeout = 0.1 if drain_until is None else max(0.0, drain_until - time.monotonic())
        if deadline is not None and Stop.why is None:
            timeout = min(timeout, max(0.0, deadline - time.monotonic()))
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
    return seen

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
MAX_SECONDS = 10.0**7  # more than any run's wall or CPU time
MAX_BYTES = 1 << 50


@dataclass(frozen=True)
class Usage:
    """What a run cost, as the container's cgroup counted it."""

    wall_seconds: float  # from the code's delivery to its exit, a compile step included
    cpu_seconds: float  # user and system, every process of the container
    peak_memory_bytes: int


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
    compile_failed: bool = False  # the runtime's compile step failed; the code never ran
    usage: Usage | None = None
    files_truncated: bool = False  # some files matched `collect` but did not fit its bounds
    timed_out: bool = False  # the supervisor ended the code at its deadline
    stopped: bool = False  # the supervisor ended the code when the controller asked (SIGTERM)


def _int_in(value: object, allowed: range) -> int | None:
    # bool is an int to Python, and not a number to us.
    if type(value) is int and value in allowed:
        return value
    return None


def _seconds(value: object) -> float | None:
    if type(value) is bool or not isinstance(value, int | float):
        return None
    return float(value) if 0 <= value <= MAX_SECONDS else None  # NaN fails both


def _usage(fields: object) -> Usage | None:
    if not isinstance(fields, dict):
        return None
    wall = _seconds(fields.get("wall_seconds"))
    cpu = _seconds(fields.get("cpu_seconds"))
    peak = _int_in(fields.get("peak_memory_bytes"), range(MAX_BYTES))
    if wall is None or cpu is None or peak is None:
        return None
    return Usage(wall_seconds=wall, cpu_seconds=cpu, peak_memory_bytes=peak)


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
        compile_failed=fields.get("compile_failed") is True,
        usage=_usage(fields.get("usage")),
        files_truncated=fields.get("files_truncated") is True,
        timed_out=fields.get("timed_out") is True,
        stopped=fields.get("stopped") is True,
    )


@dataclass(frozen=True)
class Program:
    """How the supervisor runs a task's code: its runtime's commands and what the task brings.
    The defaults are the `python` runtime, with the code as its only file."""

    main: str = "main.py"  # the code's file name under the work area
    run: tuple[str, ...] = ("python3", "main.py")
    compile: tuple[str, ...] = ()
    python: bool = True  # run the main file in the waiting interpreter itself
    files: tuple[tuple[str, bytes], ...] = ()  # written under the work area first
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    collect: tuple[str, ...] = ()  # glob patterns of the files to send back after the run
    collect_files: int = 0
    collect_bytes: int = 0
    # Seconds from the code's delivery after which the supervisor ends it (None: never; the
    # controller's own deadline stays the backstop).
    deadline: float | None = None


def build_payload(
    code: str,
    stdin: str | None,
    limit: int,
    *,
    interactive: bool = False,
    program: Program = Program(),
) -> bytes:
    """The framed job for the supervisor: its length, a newline, then the JSON."""
    job = {
        "code": code,
        "stdin": stdin,
        "limit": limit,
        "interactive": interactive,
        "main": program.main,
        "run": list(program.run),
        "compile": list(program.compile),
        "python": program.python,
        "files": [[name, base64.b64encode(data).decode()] for name, data in program.files],
        "args": list(program.args),
        "env": dict(program.env),
        "collect": list(program.collect),
        "collect_files": program.collect_files,
        "collect_bytes": program.collect_bytes,
        "deadline": program.deadline,
    }
    body = json.dumps(job).encode("utf-8")
    return str(len(body)).encode() + b"\n" + body
