"""The small program that runs first inside every task container, and how to read its report.

It arrives as a constant `python3 -I -c SOURCE` argument (no user data in argv, no shell), reads
the task's code and stdin as framed JSON from the container's stdin (for an interactive task,
whatever follows the frame is passed on to the code's stdin, live, until EOF), writes the code to
`/work/main.py`, runs it, and copies at most `limit` bytes of each output stream through,
counting what it drops. When the code exits it ends the container (a `setsid` grandchild cannot
keep it alive), and writes a one-line report after a marker on stderr, which `parse_report`
splits off again.
"""

import json
from dataclasses import dataclass

MARKER = b"\x00\x1etaskyard-report:"

SOURCE = r'''
import json, os, select, subprocess, sys, time
MARKER = b"\x00\x1etaskyard-report:"

def report(**fields):
    os.write(2, MARKER + json.dumps(fields).encode() + b"\n")

def receive(wait):
    # The payload is framed as b"<length>\n" + JSON; whatever follows is live stdin.
    data, deadline = b"", time.monotonic() + wait
    while True:
        head, newline, rest = data.partition(b"\n")
        if newline and head.isdigit() and len(rest) >= int(head):
            return rest[:int(head)], rest[int(head):], False
        left = deadline - time.monotonic()
        if left <= 0:
            return None, b"", False
        ready, _, _ = select.select([0], [], [], left)
        if ready:
            chunk = os.read(0, 1 << 20)
            if not chunk:
                return None, b"", True
            data += chunk

def write_all(fd, data):
    while data:
        data = data[os.write(fd, data):]

def main():
    raw, early_input, _ = receive(float(sys.argv[1]) if len(sys.argv) > 1 else 10.0)
    if not raw:
        report(error="no code was delivered to the container")
        return 3
    job = json.loads(raw)
    limit = job["limit"]
    try:
        with open("/work/main.py", "w", encoding="utf-8") as f:
            f.write(job["code"])
    except OSError as exc:
        report(error="could not write the code to the work area: %s" % exc)
        return 3
    child = subprocess.Popen(
        [sys.executable, "/work/main.py"], cwd="/work",
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
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
            keep = max(0, min(len(chunk), limit - seen[out]))
            if keep:
                write_all(out, chunk[:keep])
            seen[out] += len(chunk)
        if not ready and drain_until is not None:
            break
        if drain_until is None and child.poll() is not None:
            # The code has exited; whatever it left behind gets a moment to flush, no more.
            drain_until = time.monotonic() + 0.2
            live_input = False
    code = child.wait()
    exit_code = code if code >= 0 else 128 - code
    report(exit_code=exit_code, stdout_bytes=seen[1], stderr_bytes=seen[2],
           stdout_truncated=seen[1] > limit, stderr_truncated=seen[2] > limit)
    return exit_code

sys.exit(main())
'''


@dataclass(frozen=True)
class Report:
    """What the supervisor said about the run, or `None` fields where it said nothing."""

    exit_code: int | None = None
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    error: str | None = None


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
    )
    return stderr[:at], report
