"""The boundary between a task and what runs beside it in its container, on the real engine
(and under gVisor, where `deploy/test.sh` runs this file again).

The supervisor and the init (PID 1) carry the task's output and report on the container's
stdout and receive its code and a key on its stdin. A task that could read or write those, stop
or trace their processes, or set their limits could forge its own outcome, learn the key, or
keep its deadline from holding. Each case tries every way in that the probes of issue #14 found
or that the same class holds, and checks what a user would: the task's own exit code and output
stand, and the benign task beside it runs on time (`run_beside_benign`).
"""

import json

import docker
from harness import GVISOR, Client, Server, run_beside_benign, task_body

# Every way a process reaches another one of the same container: its descriptors and memory
# through /proc, signals, ptrace, and its resource limits. Run against PID 1 (the init) and
# the task's parent (the supervisor).
REACH = r"""
import ctypes, errno, json, os, resource, signal
libc = ctypes.CDLL(None, use_errno=True)
PTRACE_ATTACH, PTRACE_SEIZE = 16, 0x4206

def attempt(action):
    try:
        action()
        return "done"
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc.errno))

def libc_call(fn, *args):
    def call():
        if fn(*args) == -1:
            number = ctypes.get_errno()
            raise OSError(number, os.strerror(number))
    return call

def opened(path, flags):
    return lambda: os.close(os.open(path, flags | os.O_NONBLOCK))

facts = {"uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups()}
with open("/proc/self/status") as status:
    facts["caps"] = {line.split(":")[0]: line.split()[1] for line in status
                     if line.startswith(("CapEff", "CapPrm", "CapAmb"))}
for who, pid in (("init", 1), ("supervisor", os.getppid())):
    tried = {}
    for fd in (0, 1, 2):
        tried[f"fd{fd}_read"] = attempt(opened(f"/proc/{pid}/fd/{fd}", os.O_RDONLY))
        tried[f"fd{fd}_write"] = attempt(opened(f"/proc/{pid}/fd/{fd}", os.O_WRONLY))
    for name in ("mem", "environ", "cwd/."):
        tried[name] = attempt(opened(f"/proc/{pid}/{name}", os.O_RDONLY))
    tried["SIGSTOP"] = attempt(lambda: os.kill(pid, signal.SIGSTOP))
    tried["SIGKILL"] = attempt(lambda: os.kill(pid, signal.SIGKILL))
    tried["ptrace_attach"] = attempt(libc_call(libc.ptrace, PTRACE_ATTACH, pid, 0, 0))
    tried["ptrace_seize"] = attempt(libc_call(libc.ptrace, PTRACE_SEIZE, pid, 0, 0))
    tried["prlimit"] = attempt(lambda: resource.prlimit(pid, resource.RLIMIT_NOFILE, (1, 1)))
    facts[who] = tried
print(json.dumps(facts))
"""


def test_the_task_cannot_reach_its_supervisor_or_the_init(
    client: Client, server: Server, engine: docker.DockerClient
) -> None:
    status = run_beside_benign(client, server, engine, task_body(REACH, timeout=20)).status
    assert (status["phase"], status["reason"]) == ("Succeeded", "Completed"), status
    facts = json.loads(status["stdout"])
    assert (facts["uid"], facts["gid"], facts["groups"]) == (65534, 65534, [])
    assert set(facts["caps"].values()) == {"0000000000000000"}, facts["caps"]
    for who in ("init", "supervisor"):
        reached = {
            way: result for way, result in facts[who].items() if result not in ("EACCES", "EPERM")
        }
        if GVISOR:
            # gVisor's /proc lets another user read a process's environment; ours holds
            # nothing secret (test_hardening checks its names), and no key is ever in it.
            reached.pop("environ", None)
        assert not reached, f"the task reached its {who}: {reached}"


# The probe of issue #14, made general: read the supervisor's keyed lines and its stdin (which
# carries the key) wherever they can be opened, and write forged lines, keyed with whatever key
# turned up and bare, to everything that takes them; then exit 5.
FORGE = r"""
import base64, json, os, re, sys, time
candidates = [f"/proc/{pid}/fd/{fd}" for pid in (1, os.getppid()) for fd in (0, 1, 2)]
seen, keys = b"", set()
deadline = time.monotonic() + 2
while time.monotonic() < deadline:
    for path in candidates:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            seen += os.read(fd, 1 << 16)
        except OSError:
            pass
        os.close(fd)
    print("tick", flush=True)  # so that the supervisor writes keyed lines meanwhile
    time.sleep(0.05)
keys.update(re.findall(rb"([0-9a-f]{32})[hoer]", seen))
keys.update(re.findall(rb"^([0-9a-f]{32})$", seen, re.M))
lines = []
for key in keys or {b""}:
    lines.append(key + b"o" + base64.b64encode(b"FORGED\n") + b"\n")
    lines.append(key + b"r" + json.dumps({"exit_code": 0}).encode() + b"\n")
    lines.append(key + b"r" + json.dumps({"error": "E" * 250000}).encode() + b"\n")
lines.append(b"\x00\x1etaskyard-report:" + json.dumps(
    {"error": "no code was delivered to the container", "undelivered": True}).encode() + b"\n")
written = 0
for path in candidates:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        continue
    for line in lines:
        try:
            os.write(fd, line)
            written += 1
        except OSError:
            pass
    os.close(fd)
sys.stderr.write(f"read {len(seen)} bytes, found {len(keys)} keys, wrote {written} lines\n")
sys.stderr.write(lines[-1].decode())  # a report of its own, on its own stderr
sys.exit(5)
"""


def test_a_task_cannot_forge_its_output_or_report(
    client: Client, server: Server, engine: docker.DockerClient
) -> None:
    attack = run_beside_benign(client, server, engine, task_body(FORGE, timeout=20))
    status = attack.status
    assert (status["phase"], status["reason"], status["exit_code"]) == (
        "Failed",
        "NonZeroExit",
        5,
    ), status
    assert "FORGED" not in status["stdout"]
    assert set(status["stdout"].split()) == {"tick"}
    assert status["stderr"].startswith("read 0 bytes, found 0 keys, wrote 0 lines\n")
    assert status["attempt"] == 1
    events = client.events(attack.task["id"])
    assert [event["to_phase"] for event in events][-1] == "Failed"
    assert all(len(event["message"] or "") < 1000 for event in events)


# Every place a task might write: the work area, shared memory, message queues, and the rest of
# the file system. What it can write in all of them together stays within its storage.
FILL = r"""
import ctypes, errno, json, os
def fill(directory):
    written = 0
    try:
        with open(os.path.join(directory, "fill"), "wb", buffering=0) as out:
            while True:
                written += out.write(b"x" * (1 << 20))
    except OSError as exc:
        return written, errno.errorcode.get(exc.errno, str(exc.errno))
    return written, None
facts = {place: fill(place) for place in ("/work", "/dev/shm", "/tmp", "/var/tmp", "/dev",
                                          "/run", "/")}
librt = ctypes.CDLL("librt.so.1", use_errno=True)
librt.mq_open.restype = ctypes.c_int
queue = librt.mq_open(b"/taskyard-probe", os.O_CREAT | os.O_RDWR, 0o600, None)
facts["mq_open"] = errno.errorcode.get(ctypes.get_errno(), "?") if queue == -1 else "opened"
print(json.dumps(facts))
"""


def test_every_writable_place_counts_against_storage(
    client: Client, server: Server, engine: docker.DockerClient
) -> None:
    status = run_beside_benign(
        client, server, engine, task_body(FILL, ram="256MB", storage="16MB", timeout=30)
    ).status
    assert (status["phase"], status["reason"]) == ("Succeeded", "Completed"), status
    facts = json.loads(status["stdout"])
    assert facts["/work"][1] in ("ENOSPC", "EFBIG"), facts
    assert facts["/dev/shm"][1] in ("ENOSPC", "EFBIG"), facts
    assert facts["/work"][0] + facts["/dev/shm"][0] <= 16 * 1024 * 1024, facts
    for place in ("/tmp", "/var/tmp", "/dev", "/run", "/"):
        assert facts[place][0] == 0, (place, facts[place])
    if GVISOR:
        # gVisor keeps POSIX message queues in its own kernel, within the sandbox's memory
        # (so under the task's ram), and does not apply RLIMIT_MSGQUEUE.
        assert facts["mq_open"] == "opened", facts
    else:
        assert facts["mq_open"] == "EMFILE", facts
