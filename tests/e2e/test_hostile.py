"""Hostile code on the real engine: floods, raw bytes, a full work area, open files, the network,
/proc and /sys, odd code, and exits that look like timeouts.

Every case runs through `run_beside_benign`: a benign task runs beside it and must succeed on
time, /healthz must stay prompt during the attack, and nothing of either task may be left on the
engine or the host afterwards. Each case then checks the phase, reason and result a person would
expect: most of them in one table (`ENDINGS`), the probes that report what they could reach and
the cases of another shape in tests of their own.
"""

import hashlib
import json
import math
import socket
from dataclasses import dataclass, field
from typing import Any

import docker
import httpx
import psutil
import pytest
from harness import GVISOR, Client, HostNamespaces, Server, run_beside_benign, task_body

from sandbox.frames import log_budget

MIB = 1024 * 1024
LIMIT = MIB  # the output cap per stream (TASKYARD_OUTPUT_LIMIT_BYTES's default)
# Under gVisor, running out of memory ends the whole sandbox, the supervisor with it.
WHOLE_SANDBOX_OOM = (
    "killed: out of memory (limit {}); under gVisor that ends the whole "
    "sandbox, whichever process used the memory"
)


def logs_text(server: Server, task_id: str) -> dict[str, str]:
    """What GET /tasks/{id}/logs gives back for each stream, once the task has ended."""
    text = {"stdout": "", "stderr": ""}
    with httpx.Client(base_url=server.url, timeout=30) as http:
        response = http.get(f"/tasks/{task_id}/logs")
        assert response.status_code == 200, response.text
        for block in response.text.split("\n\n"):
            fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
            if fields.get("event") == "output":
                data = json.loads(fields["data"])
                text[data["stream"]] += data["text"]
    return text


# --- hostile code, and how it ends --------------------------------------------------------------

# 1 MiB of numbered lines, so that what is kept can be checked byte for byte.
BLOCK_CODE = "block = b''.join(b'%07d\\n' % i for i in range(131072))\n"
BLOCK = b"".join(b"%07d\n" % i for i in range(131072))

# Every byte value, then sequences the engine's log driver would replace byte by byte where
# UTF-8 decoding with replacement replaces a whole broken sequence with one U+FFFD.
RAW = bytes(range(256)) + b"|\xe2\x82(|\xf0\x9f\x98|\xed\xa0\x80|\xc3\x28|caf\xc3\xa9|\xff\xfe"

BIDI = (
    "שלום עולם \u202eevil.exe\u202c مرحبا e\u0301 a\u0308\u0323 👩\u200d💻 "
    "\ufeff Z\u0351\u0336\u0489 \u2067x\u2069"
)


def code_of_size(size: int) -> str:
    """Python code of exactly `size` UTF-8 bytes, mostly a comment of two-byte characters."""
    head = "print('ran', len(open(__file__, 'rb').read()))\n#"
    pad = size - len(head.encode())
    return head + "é" * (pad // 2) + "x" * (pad % 2)


# Bytes no source code may hold, for stdin.
NUL_STDIN = "a\x00b\x00\x00c"
READ_STDIN = (
    "import hashlib, sys\ndata = sys.stdin.buffer.read()\n"
    "print(len(data), hashlib.sha256(data).hexdigest())\n"
)
RIGHT_TO_LEFT = (
    f"import sys\ntext = {BIDI!r}\nprint(text)\nprint(text[::-1], file=sys.stderr)\n# {BIDI}\n"
)


@dataclass(frozen=True)
class Ending:
    """A hostile task, and what a person checks once it has run beside a benign one."""

    code: str
    limits: dict[str, Any]  # task_body's keywords: ram, storage, timeout, stdin
    ends: tuple[str, str]  # its phase and reason
    status: dict[str, Any] = field(default_factory=dict)  # status fields, exactly so
    result_ends: tuple[str, ...] = ()  # the result ends with one of these
    message_has: str = ""
    ran_seconds: tuple[float, float] = (0, math.inf)  # at least, and less than
    counted: tuple[int, int] | None = None  # the number it printed last: above, below
    output_in_logs: bool = False  # GET /logs gives back the status's stdout and stderr
    spec_kept: bool = False  # the task's spec holds the code and stdin as sent
    log_peak: tuple[float, float] | None = None  # the engine's log of it: above, at most


ENDINGS = {
    # 2 GiB read and dropped, not a timeout; the first MiB of each stream kept whole and in
    # order; the engine's own log held the kept output, and no more than the budget.
    "a-gigabyte-on-each-stream-is-capped-and-kept": Ending(
        BLOCK_CODE
        + "import os\nfor _ in range(1024):\n    os.write(1, block)\n"
        + "    os.write(2, block.upper())\n",
        {"ram": "256MB", "storage": "16MB", "timeout": 20},
        ("Succeeded", "Completed"),
        {
            "stdout_truncated": True,
            "stderr_truncated": True,
            "stdout": BLOCK.decode(),
            "stderr": BLOCK.upper().decode(),
        },
        message_has="stdout was cut at 1MB",
        ran_seconds=(0, 15),
        log_peak=(2 * LIMIT, log_budget(LIMIT, 20)),
    ),
    "interleaved-stdout-and-stderr-stay-apart-and-in-order": Ending(
        "import sys\n"
        "for i in range(3000):\n"
        "    sys.stdout.write(f'out {i}\\n'); sys.stdout.flush()\n"
        "    sys.stderr.write(f'err {i}\\n'); sys.stderr.flush()\n",
        {"timeout": 30},
        ("Succeeded", "Completed"),
        {
            "stdout": "".join(f"out {i}\n" for i in range(3000)),
            "stderr": "".join(f"err {i}\n" for i in range(3000)),
        },
        output_in_logs=True,
    ),
    "raw-bytes-come-back-exactly-on-both-streams": Ending(
        f"import os\nraw = {RAW!r}\nfor _ in range(4):\n    os.write(1, raw)\n"
        "    os.write(2, raw[::-1])\n",
        {"timeout": 30},
        ("Succeeded", "Completed"),
        {
            "stdout": (RAW * 4).decode("utf-8", errors="replace"),
            "stderr": (RAW[::-1] * 4).decode("utf-8", errors="replace"),
            "result": (RAW * 4).decode("utf-8", errors="replace"),
        },
        output_in_logs=True,
    ),
    "one-huge-file-fills-the-work-area-and-fails-clearly": Ending(
        "with open('huge', 'wb') as f:\n    while True:\n        f.write(b'x' * 1024 * 1024)\n",
        {"ram": "256MB", "storage": "32MB", "timeout": 30},
        ("Failed", "NonZeroExit"),
        {"exit_code": 1},
        result_ends=(
            "OSError: [Errno 28] No space left on device",
            "OSError: [Errno 27] File too large",
        ),
    ),
    # TASKYARD_NOFILE_LIMIT, 1024, less what the interpreter holds open.
    "thousands-of-open-files-stop-at-the-limit": Ending(
        "files = []\n"
        "try:\n"
        "    for _ in range(5000):\n"
        "        files.append(open('/dev/null'))\n"
        "finally:\n"
        "    print('opened', len(files))\n",
        {"timeout": 30},
        ("Failed", "NonZeroExit"),
        result_ends=("OSError: [Errno 24] Too many open files: '/dev/null'",),
        counted=(1000, 1024),
    ),
    "code-of-the-largest-size-runs": Ending(
        code_of_size(MIB),
        {"timeout": 30},
        ("Succeeded", "Completed"),
        {"result": f"ran {MIB}\n"},
        spec_kept=True,
    ),
    "stdin-with-nul-bytes-arrives-whole": Ending(
        READ_STDIN,
        {"timeout": 30, "stdin": NUL_STDIN},
        ("Succeeded", "Completed"),
        {"stdout": f"{len(NUL_STDIN.encode())} {hashlib.sha256(NUL_STDIN.encode()).hexdigest()}\n"},
    ),
    "right-to-left-and-combining-characters-come-back-exactly": Ending(
        RIGHT_TO_LEFT,
        {"timeout": 30, "stdin": BIDI},
        ("Succeeded", "Completed"),
        {"stdout": BIDI + "\n", "stderr": BIDI[::-1] + "\n"},
        output_in_logs=True,
        spec_kept=True,
    ),
    # Endings that look like timeouts, and are not.
    "a-task-that-sigkills-itself-fails-not-timed-out": Ending(
        "import os\nprint('before', flush=True)\nos.kill(os.getpid(), 9)\n",
        {"timeout": 30},
        ("Failed", "NonZeroExit"),
        {
            "exit_code": 137,
            "result": "killed by signal SIGKILL (exit code 137)",
            "stdout": "before\n",
        },
        ran_seconds=(0, 30),
    ),
    "an-oom-kill-before-the-deadline-is-not-timed-out": Ending(
        "import time\n"
        "time.sleep(1)\n"
        "blocks = []\n"
        "while True:\n"
        "    blocks.append(bytearray(8 * 1024 * 1024))\n",
        {"ram": "64MB", "storage": "16MB", "timeout": 3},
        ("Failed", "OOMKilled"),
        {
            "exit_code": 137,
            "result": WHOLE_SANDBOX_OOM.format("64MB")
            if GVISOR
            else "killed: out of memory (limit 64MB)",
        },
    ),
    # Processes.
    "a-cpu-spin-past-the-deadline-times-out": Ending(
        "import os\nwhile True:\n    os.getpid()\n",
        {"timeout": 4},
        ("TimedOut", "DeadlineExceeded"),
        {"result": "exceeded its 4 s timeout and was killed"},
        ran_seconds=(4, 30),
    ),
    # run_beside_benign checks that no process is left in the container's cgroup; the task
    # is not held open until the grandchild or the deadline ends.
    "zombies-and-a-setsid-grandchild-do-not-outlive-the-task": Ending(
        "import os, subprocess, sys\n"
        "for _ in range(20):\n"
        "    if os.fork() == 0:\n"
        "        os._exit(0)  # never waited for: a zombie\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(3600)'],\n"
        "                 start_new_session=True, stdout=subprocess.DEVNULL,\n"
        "                 stderr=subprocess.DEVNULL)\n"
        "print('left them behind')\n",
        {"timeout": 60},
        ("Succeeded", "Completed"),
        {"result": "left them behind\n"},
        ran_seconds=(0, 20),
    ),
}


@pytest.mark.parametrize("case", list(ENDINGS.values()), ids=list(ENDINGS))
def test_hostile_code_ends_as_a_person_expects(
    client: Client, server: Server, engine: docker.DockerClient, case: Ending
) -> None:
    attack = run_beside_benign(client, server, engine, task_body(case.code, **case.limits))
    status = attack.status

    assert (status["phase"], status["reason"]) == case.ends, status
    for name, value in case.status.items():
        assert status[name] == value, name
    assert status["result"].endswith(case.result_ends or ""), status["result"]
    assert case.message_has in status["message"], status["message"]
    low, high = case.ran_seconds
    assert low <= attack.ran_seconds < high, attack.ran_seconds
    if case.counted is not None:
        above, below = case.counted
        assert above < int(status["stdout"].split()[-1]) < below, status["stdout"]
    if case.output_in_logs:
        assert logs_text(server, attack.task["id"]) == {
            "stdout": status["stdout"],
            "stderr": status["stderr"],
        }
    if case.spec_kept:
        assert attack.task["spec"]["code"] == case.code
        assert attack.task["spec"]["stdin"] == case.limits.get("stdin")
    if case.log_peak is not None:
        above, at_most = case.log_peak
        assert above < attack.log_peak <= at_most, attack.log_peak


# --- the cases of other shapes: a flood without end, probes, refusals --------------------------

# Each small write is a system call, and gVisor's cost several times more (runsc's ptrace
# platform): it wrote about 9,000 lines a second per stream on a loaded 2-core machine, so the
# 1 MiB cap (100,000 lines) needs a longer deadline there.
FLOOD_TIMEOUT = 30 if GVISOR else 8


def test_an_endless_flood_of_small_writes_times_out_with_its_output_cut_and_flagged(
    client: Client, server: Server, engine: docker.DockerClient
) -> None:
    code = (
        "import sys\n"
        "i = 0\n"
        "while True:\n"
        "    print(f'out {i}', flush=True)\n"
        "    print(f'err {i}', file=sys.stderr, flush=True)\n"
        "    i += 1\n"
    )
    attack = run_beside_benign(
        client,
        server,
        engine,
        task_body(code, ram="128MB", storage="16MB", timeout=FLOOD_TIMEOUT),
        within=FLOOD_TIMEOUT + 60,
    )
    status = attack.status
    assert (status["phase"], status["reason"]) == ("TimedOut", "DeadlineExceeded"), status
    assert status["result"] == f"exceeded its {FLOOD_TIMEOUT} s timeout and was killed"
    # No report comes from a killed supervisor; the byte past the cap still shows the cut.
    assert status["stdout_truncated"] is True
    assert status["stderr_truncated"] is True
    assert len(status["stdout"].encode()) == LIMIT
    lines = status["stdout"].splitlines()
    assert lines[:3] == ["out 0", "out 1", "out 2"]
    assert lines[-2] == f"out {len(lines) - 2}"  # in order, nothing lost before the cut
    assert attack.log_peak <= log_budget(LIMIT, FLOOD_TIMEOUT), attack.log_peak


def test_output_written_around_the_supervisor_is_not_taken_as_the_tasks(
    client: Client, server: Server, engine: docker.DockerClient
) -> None:
    # The init process holds the container's stdout and stderr, and the task runs as the same
    # user, so it can write there directly; none of it may pass as the task's output or as
    # the supervisor's report.
    code = (
        "import base64, json, os\n"
        "facts = {}\n"
        "for path in ('/proc/1/fd/1', '/proc/1/fd/2'):\n"
        "    try:\n"
        "        fd = os.open(path, os.O_WRONLY)\n"
        "        os.write(fd, b'INJECTED raw line\\n')\n"
        '        os.write(fd, b\'\\x00\\x1etaskyard-report:{"error": "forged"}\\n\')\n'
        "        os.write(fd, b'0' * 32 + b'o' + base64.b64encode(b'INJECTED frame') + b'\\n')\n"
        "        os.write(fd, b'INJECTED' * 100000)\n"
        "        facts[path] = 'written'\n"
        "    except OSError as exc:\n"
        "        facts[path] = exc.strerror\n"
        "sup = os.getppid()\n"
        "for what in ('mem', 'fd', 'environ'):\n"
        "    try:\n"
        "        os.listdir(f'/proc/{sup}/fd') if what == 'fd' else open(f'/proc/{sup}/{what}', 'rb').read(1)\n"  # noqa: E501
        "        facts['supervisor ' + what] = 'readable'\n"
        "    except OSError as exc:\n"
        "        facts['supervisor ' + what] = exc.strerror\n"
        "print(json.dumps(facts))\n"
    )
    attack = run_beside_benign(client, server, engine, task_body(code, timeout=30))
    status = attack.status
    assert (status["phase"], status["reason"]) == ("Succeeded", "Completed"), status
    assert "INJECTED" not in status["stdout"] + status["stderr"]
    facts = json.loads(status["stdout"])
    # Its memory, which holds the key, stays closed to the task under either runtime.
    assert facts["supervisor mem"] == "Permission denied", facts
    if GVISOR:
        # gVisor ignores non-dumpable for these two: the descriptors are the container's own
        # stdio and the task's output pipes, the environment the same as the task's.
        assert facts["supervisor fd"] == facts["supervisor environ"] == "readable", facts
    else:
        assert facts["supervisor fd"] == facts["supervisor environ"] == "Permission denied"
    assert "INJECTED" not in "".join(logs_text(server, attack.task["id"]).values())


# --- the work area and open files -------------------------------------------------------------


def test_a_million_small_files_run_out_of_inodes_not_of_host_memory(
    client: Client, server: Server, engine: docker.DockerClient
) -> None:
    code = (
        "n = 0\n"
        "try:\n"
        "    for n in range(1_000_000):\n"
        "        open(f'f{n}', 'w').close()\n"
        "finally:\n"
        "    print('made', n)\n"
    )
    attack = run_beside_benign(
        client, server, engine, task_body(code, ram="128MB", storage="64MB", timeout=60)
    )
    status = attack.status
    if GVISOR:
        # runsc ignores the tmpfs nr_inodes option: empty files are bounded by `ram` alone,
        # and running out of it kills the whole sandbox (after about 12 s here).
        assert (status["phase"], status["reason"]) == ("Failed", "OOMKilled"), status
        assert status["result"] == WHOLE_SANDBOX_OOM.format("128MB")
        return
    assert (status["phase"], status["reason"]) == ("Failed", "NonZeroExit"), status
    assert status["result"].endswith(
        f"OSError: [Errno 28] No space left on device: 'f{int(status['stdout'].split()[1])}'"
    ), status["result"]
    # The work area has one inode per 4 KiB of storage: 64MB gives 16,384.
    assert 10_000 < int(status["stdout"].split()[1]) <= 64 * MIB // 4096


# --- the network ------------------------------------------------------------------------------

NETWORK_PROBE = r"""
import json, socket, sys
targets = json.loads(sys.stdin.read())
facts = {}
for host, port in targets:
    try:
        socket.create_connection((host, port), timeout=3).close()
        facts[f"{host}:{port}"] = "connected"
    except OSError as exc:
        facts[f"{host}:{port}"] = exc.strerror or repr(exc)
for name in ("metadata.google.internal", "deb.debian.org", "localhost.localdomain"):
    try:
        socket.getaddrinfo(name, 80)
        facts["dns " + name] = "resolved"
    except OSError as exc:
        facts["dns " + name] = exc.strerror or repr(exc)
try:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.settimeout(3)
    udp.sendto(b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x01",
               ("8.8.8.8", 53))
    udp.recvfrom(512)
    facts["udp 8.8.8.8:53"] = "answered"
except OSError as exc:
    facts["udp 8.8.8.8:53"] = exc.strerror or repr(exc)
print(json.dumps(facts))
"""


def host_addresses() -> list[str]:
    """This host's own IPv4 addresses (loopback, the engine's bridge, the LAN)."""
    return sorted(
        {
            address.address
            for addresses in psutil.net_if_addrs().values()
            for address in addresses
            if address.family == socket.AF_INET
        }
    )


def test_no_network_reaches_the_metadata_address_dns_or_the_hosts_own_ports(
    client: Client, server: Server, engine: docker.DockerClient
) -> None:
    # The API's own port is open on the host while this runs; from inside it must not be.
    with socket.create_connection(("127.0.0.1", server.port), timeout=5):
        pass
    targets = [["169.254.169.254", 80], ["1.1.1.1", 443], ["8.8.8.8", 53]]
    for address in host_addresses():
        targets += [[address, server.port], [address, 22], [address, 2375]]
    attack = run_beside_benign(
        client, server, engine, task_body(NETWORK_PROBE, timeout=60, stdin=json.dumps(targets))
    )
    status = attack.status
    assert status["phase"] == "Succeeded", status
    facts = json.loads(status["stdout"])
    assert facts, status
    reached = {
        what: how for what, how in facts.items() if how in {"connected", "resolved", "answered"}
    }
    assert not reached, reached
    assert {f"{address}:{server.port}" for address in host_addresses()} <= facts.keys()
    # gVisor's own network stack answers with another error, for the same empty network.
    assert facts["169.254.169.254:80"] == (
        "No route to host" if GVISOR else "Network is unreachable"
    )


# --- /proc and /sys ---------------------------------------------------------------------------

PROC_PROBE = r"""
import glob, json, os
seen = {}
def read(path, limit=65536):
    try:
        with open(path, "rb") as f:
            seen[path] = f.read(limit).decode("utf-8", "replace")
    except OSError as exc:
        seen[path] = "! " + (exc.strerror or repr(exc))
for pid_dir in glob.glob("/proc/[0-9]*"):
    for name in ("environ", "cmdline", "status", "cgroup", "mountinfo"):
        read(f"{pid_dir}/{name}")
for path in ("/proc/cmdline", "/proc/kcore", "/proc/keys", "/proc/timer_list",
             "/proc/sched_debug", "/proc/sysrq-trigger", "/proc/self/mountinfo",
             "/etc/hostname", "/etc/hosts", "/etc/resolv.conf"):
    read(path, 4096)
for path in glob.glob("/sys/class/net/*/address") + glob.glob("/sys/fs/cgroup/*/*"):
    if os.path.isfile(path):
        read(path, 4096)
for path in ("/sys/firmware", "/proc/acpi"):
    seen[path] = " ".join(sorted(os.listdir(path))) if os.path.isdir(path) else ""
seen["pids"] = " ".join(sorted(os.path.basename(p) for p in glob.glob("/proc/[0-9]*")))
print(json.dumps(seen))
"""


def test_proc_and_sys_reveal_nothing_of_the_service(
    client: Client, server: Server, engine: docker.DockerClient
) -> None:
    attack = run_beside_benign(client, server, engine, task_body(PROC_PROBE, timeout=60))
    status = attack.status
    assert status["phase"] == "Succeeded", status
    assert status["stdout_truncated"] is False
    seen = json.loads(status["stdout"])
    everything = status["stdout"]
    token = (server.data_dir / "admin-token").read_text().strip()
    for secret in (token, str(server.data_dir), server.owner, "TASKYARD_", "DOCKER_HOST"):
        assert secret not in everything, secret
    # Its own pid namespace: the init, the supervisor, the task, and nothing of the host's.
    assert len(seen["pids"].split()) <= 4, seen["pids"]
    # The engine masks what would describe the host's kernel and memory.
    for masked in ("/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug"):
        # Empty where the kernel has the file, absent where it has not.
        assert seen[masked] in {"", "! No such file or directory"}, (masked, seen[masked][:200])
    assert seen["/sys/firmware"] == ""
    assert seen["/proc/acpi"] == ""
    assert seen["/proc/sysrq-trigger"].startswith("!")


# --- odd code the API refuses -----------------------------------------------------------------


def test_code_one_byte_over_the_largest_size_is_refused(client: Client) -> None:
    response = client.http.post("/tasks", json=task_body(code_of_size(MIB + 1)))
    assert response.status_code == 413, response.text
    assert response.json()["detail"][0]["loc"] == ["body", "code"]
    assert f"code is {MIB + 1} bytes; the limit is {MIB} bytes" in response.text


def test_code_with_nul_bytes_is_refused(client: Client) -> None:
    code = "print('before')\n# a NUL byte: \x00, and code after it\nprint('after the NUL')\n"
    refused = client.http.post("/tasks", json=task_body(code, timeout=30))
    # Python cannot run source with a NUL in it (3.12 refuses it, 3.11 stops reading at it):
    # the API says so up front instead of running something else than was sent. Stdin with
    # NULs is fine (the case stdin-with-nul-bytes-arrives-whole above).
    assert refused.status_code == 422, refused.text
    detail = refused.json()["detail"][0]
    assert detail["loc"] == ["body", "code"] and "NUL" in detail["msg"]


def test_a_lone_surrogate_in_the_code_is_refused_not_a_500(client: Client) -> None:
    body = json.dumps(task_body("x")).replace('"x"', '"print(\\"\\ud800\\")"')
    response = client.http.post(
        "/tasks", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"][-1] == "code"


# --- seccomp and namespaces -------------------------------------------------------------------

SECCOMP_PROBE = r"""
import ctypes, errno, json, multiprocessing, platform, socket, subprocess, sys, threading, time
libc = ctypes.CDLL(None, use_errno=True)
NR = {"x86_64": {"unshare": 272, "setns": 308, "clone": 56, "clone3": 435, "io_uring_setup": 425},
      "aarch64": {"unshare": 97, "setns": 268, "clone": 220, "clone3": 435,
                  "io_uring_setup": 425}}[platform.machine()]
def call(name, *args):
    ctypes.set_errno(0)
    result = libc.syscall(NR[name], *[ctypes.c_long(a) for a in args])
    return errno.errorcode.get(ctypes.get_errno(), "?") if result < 0 else "allowed"
if __name__ == "__main__":
    time.sleep(2)  # the host looks at this container's processes before the calls...
    unshared_at = time.time()
    facts = {
        "unshare(CLONE_NEWUSER)": call("unshare", 0x10000000),
        "unshare(CLONE_NEWNS)": call("unshare", 0x00020000),
        "setns": call("setns", 0, 0),
        "clone(CLONE_NEWUSER)": call("clone", 0x10000000 | 17, 0, 0, 0, 0),
        "clone3": call("clone3", 0, 0),
        "io_uring_setup": call("io_uring_setup", 1, 0),
    }
    try:
        socket.socket(40, socket.SOCK_STREAM)  # AF_VSOCK
        facts["vsock"] = "allowed"
    except OSError as exc:
        facts["vsock"] = errno.errorcode[exc.errno]
    done = []
    workers = [threading.Thread(target=done.append, args=(i,)) for i in range(16)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    facts["threads"] = len(done)
    facts["subprocess"] = subprocess.run([sys.executable, "-c", "print(6 * 7)"],
                                         capture_output=True, text=True).stdout.strip()
    with multiprocessing.Pool(2) as pool:
        facts["pool"] = sum(pool.map(abs, [-1, -2, 3]))
    time.sleep(2)  # ...and after them
    print(json.dumps({"unshared_at": unshared_at, "facts": facts}))
"""

# What ordinary programs need works under either runtime.
ORDINARY = {"threads": 16, "subprocess": "42", "pool": 6}


def test_new_namespaces_never_reach_the_host_and_ordinary_programs_run(
    client: Client, server: Server, engine: docker.DockerClient
) -> None:
    host = HostNamespaces(engine, server.owner)
    try:
        attack = run_beside_benign(client, server, engine, task_body(SECCOMP_PROBE, timeout=60))
    finally:
        host.stop()
    status = attack.status
    assert status["phase"] == "Succeeded", status
    probe = json.loads(status["stdout"])
    if GVISOR:
        # runsc does not apply the seccomp profile (it would with --oci-seccomp): gVisor's own
        # kernel answers the task's system calls. New namespaces are made there, inside the
        # sandbox only; io_uring and vsock it does not offer.
        assert probe["facts"] == {
            "unshare(CLONE_NEWUSER)": "allowed",
            "unshare(CLONE_NEWNS)": "allowed",
            "setns": "ENOTSUP",
            "clone(CLONE_NEWUSER)": "EPERM",
            "clone3": "ENOSYS",
            "io_uring_setup": "EFAULT",
            "vsock": "EAFNOSUPPORT",
            **ORDINARY,
        }
    else:
        assert probe["facts"] == {
            "unshare(CLONE_NEWUSER)": "EPERM",
            "unshare(CLONE_NEWNS)": "EPERM",
            "setns": "EPERM",
            "clone(CLONE_NEWUSER)": "EPERM",
            "clone3": "ENOSYS",  # so that the C library falls back to clone
            # These two the engine's default profile allows: they show that ours is in force.
            "io_uring_setup": "ENOSYS",
            "vsock": "EPERM",
            **ORDINARY,
        }
    # Either way, the host's processes of the container are in no namespace after the calls
    # that they were not in before them.
    before, after = host.around(attack.watch.containers_of(attack.task["id"]), probe["unshared_at"])
    assert before and after, "the host never looked at the container on both sides of the calls"
    assert after <= before, sorted(after - before)
