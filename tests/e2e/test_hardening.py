"""What the code inside a task container can and cannot do, checked from inside it.

The hostile cases run through `run_beside_benign` (a benign task beside them must succeed on
time, /healthz must stay prompt, nothing may be left behind), like those in test_hostile.py.
"""

import json

import docker
import pytest
from harness import GVISOR, Client, Server, run_beside_benign, task_body

PROBE = r"""
import ctypes, json, os, socket
facts = {"uid": os.getuid(), "gid": os.getgid(), "cwd": os.getcwd()}
status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
facts["cap_eff"] = status["CapEff"].strip()
# PR_GET_NO_NEW_PRIVS: gVisor's /proc/self/status has no NoNewPrivs line.
facts["no_new_privs"] = ctypes.CDLL(None).prctl(39, 0, 0, 0, 0)
facts["interfaces"] = sorted(name for _, name in socket.if_nameindex())
facts["env"] = sorted(os.environ)
def can_write(path):
    try:
        with open(path, "w") as f:
            f.write("x")
        return True
    except OSError:
        return False
facts["write"] = {p: can_write(p) for p in ["/work/ok", "/tmp/x", "/x", "/etc/x", "/usr/x"]}
try:
    socket.create_connection(("1.1.1.1", 53), timeout=2)
    facts["internet"] = True
except OSError:
    facts["internet"] = False
try:
    socket.getaddrinfo("deb.debian.org", 80)
    facts["dns"] = True
except OSError:
    facts["dns"] = False
facts["docker_socket"] = os.path.exists("/var/run/docker.sock")
print(json.dumps(facts))
"""


@pytest.fixture(scope="module")
def facts(client: Client) -> dict:
    task = client.submit(task_body(PROBE), wait=30)
    assert task["status"]["phase"] == "Succeeded", task["status"]
    return json.loads(task["status"]["result"])


def test_runs_as_an_unprivileged_user(facts: dict) -> None:
    assert facts["uid"] == 65534
    assert facts["gid"] == 65534
    assert int(facts["cap_eff"], 16) == 0
    assert facts["no_new_privs"] == 1


def test_has_no_network(facts: dict) -> None:
    assert facts["interfaces"] == ["lo"]
    assert facts["internet"] is False
    assert facts["dns"] is False


def test_can_write_only_its_work_area(facts: dict) -> None:
    assert facts["cwd"] == "/work"
    assert facts["write"] == {
        "/work/ok": True,
        "/tmp/x": False,
        "/x": False,
        "/etc/x": False,
        "/usr/x": False,
    }


def test_sees_no_engine_socket_and_no_service_settings(facts: dict) -> None:
    assert facts["docker_socket"] is False
    assert not [name for name in facts["env"] if name.startswith(("TASKYARD", "DOCKER"))]


def test_memory_limit_holds(client: Client, server: Server, engine: docker.DockerClient) -> None:
    hog = "blocks = []\nwhile True:\n    blocks.append(bytearray(16 * 1024 * 1024))"
    task = run_beside_benign(
        client, server, engine, task_body(hog, ram="64MB", storage="16MB")
    ).task
    assert task["status"]["phase"] == "Failed"
    assert task["status"]["reason"] == "OOMKilled"
    assert "out of memory (limit 64MB)" in task["status"]["result"]


def test_memory_bomb_in_a_child_process_only(
    client: Client, server: Server, engine: docker.DockerClient
) -> None:
    code = (
        "import subprocess, sys\n"
        "r = subprocess.run([sys.executable, '-c', "
        "'b=[]\\nwhile True: b.append(bytearray(16*1024*1024))'])\n"
        "print('child exit', r.returncode)"
    )
    task = run_beside_benign(
        client, server, engine, task_body(code, ram="64MB", storage="16MB")
    ).task
    if GVISOR:
        # The sandbox as a whole is over its memory limit, and the host kills all of it: the
        # task is reported as killed for memory, saying that the whole sandbox went.
        assert (task["status"]["phase"], task["status"]["reason"]) == ("Failed", "OOMKilled")
        assert task["status"]["result"] == (
            "killed: out of memory (limit 64MB); under gVisor that ends the whole sandbox, "
            "whichever process used the memory"
        )
        return
    # The main process survived and exited 0: that is a success, whatever the engine's flag says.
    assert task["status"]["phase"] == "Succeeded", task["status"]
    assert task["status"]["result"] == "child exit -9\n"


def test_storage_limit_holds(client: Client, server: Server, engine: docker.DockerClient) -> None:
    code = (
        "import errno\n"
        "try:\n"
        "    with open('/work/big', 'wb') as f:\n"
        "        for _ in range(64):\n"
        "            f.write(b'x' * 1024 * 1024)\n"
        "    print('wrote 64MB')\n"
        "except OSError as e:\n"
        "    print('stopped:', errno.errorcode[e.errno])\n"
    )
    task = run_beside_benign(
        client, server, engine, task_body(code, ram="256MB", storage="16MB")
    ).task
    assert task["status"]["phase"] == "Succeeded", task["status"]
    assert task["status"]["result"] in {"stopped: ENOSPC\n", "stopped: EFBIG\n"}


def test_fork_bomb_is_contained(
    client: Client, server: Server, engine: docker.DockerClient
) -> None:
    code = (
        "import os\n"
        "n = 0\n"
        "try:\n"
        "    for _ in range(5000):\n"
        "        if os.fork() == 0:\n"
        "            import time; time.sleep(5); os._exit(0)\n"
        "        n += 1\n"
        "except OSError:\n"
        "    pass\n"
        "print('forked', n)\n"
    )
    task = run_beside_benign(
        client, server, engine, task_body(code, ram="256MB", storage="16MB", timeout=20)
    ).task
    if GVISOR:
        # The pids limit holds the host threads of the whole sandbox: gVisor's kernel fails to
        # make one more and exits (with 2), taking the task with it. Contained all the same:
        # the benign task beside it ran, and nothing was left behind.
        assert (task["status"]["phase"], task["status"]["reason"]) == ("Failed", "SandboxDied")
        assert task["status"]["result"].startswith(
            "the gVisor sandbox died as a whole (exit code 2)"
        ), task["status"]
        return
    assert task["status"]["phase"] == "Succeeded", task["status"]
    forked = int(task["status"]["result"].split()[1])
    assert forked < 256


def test_output_is_capped_and_flagged(
    client: Client, server: Server, engine: docker.DockerClient
) -> None:
    code = "import sys\nfor _ in range(3):\n    sys.stdout.write('x' * (1024 * 1024))\n"
    task = run_beside_benign(
        client, server, engine, task_body(code, ram="256MB", storage="16MB")
    ).task
    assert task["status"]["phase"] == "Succeeded"
    assert task["status"]["stdout_truncated"] is True
    assert len(task["status"]["stdout"]) == 1024 * 1024
    assert task["status"]["stderr_truncated"] is False


def test_non_zero_exit_reports_the_end_of_stderr(client: Client) -> None:
    task = client.submit(task_body("raise ValueError('boom')"), wait=30)
    assert task["status"]["phase"] == "Failed"
    assert task["status"]["reason"] == "NonZeroExit"
    assert task["status"]["exit_code"] == 1
    assert task["status"]["result"].endswith("ValueError: boom")


ESCAPES = r"""
import ctypes, errno, json, os, signal, time
libc = ctypes.CDLL(None, use_errno=True)
facts = {}
try:
    os.setuid(0)
    facts["setuid0"] = "worked"
except PermissionError:
    facts["setuid0"] = "EPERM"
CLONE_NEWUSER = 0x10000000
facts["unshare_user"] = libc.unshare(CLONE_NEWUSER)
facts["unshare_errno"] = errno.errorcode.get(ctypes.get_errno(), "?")
try:
    facts["pid1_environ"] = sorted(
        item.split(b"=")[0].decode() for item in open("/proc/1/environ", "rb").read().split(b"\0")
        if item)
except OSError as exc:
    facts["pid1_environ"] = exc.strerror
print(json.dumps(facts), flush=True)
time.sleep(1)  # the supervisor sends it on (it batches output for 25 ms) before PID 1 is hit
try:
    os.kill(1, signal.SIGKILL)
    print("SIGKILL to PID 1 sent", flush=True)
except PermissionError:
    print("SIGKILL to PID 1 refused", flush=True)
time.sleep(1)
print("still alive")
"""


def test_no_way_up_or_out(client: Client, server: Server, engine: docker.DockerClient) -> None:
    task = run_beside_benign(client, server, engine, task_body(ESCAPES)).task
    status = task["status"]
    facts = json.loads(status["stdout"].splitlines()[0])
    assert facts["setuid0"] == "EPERM"
    # PID 1 runs as another user than the task: its environment is not the task's to read.
    # gVisor's /proc shows it, and it holds nothing of the service's.
    environ = facts["pid1_environ"]
    if GVISOR:
        assert not [name for name in environ if name.startswith(("TASKYARD", "DOCKER"))], environ
    else:
        assert environ == "Permission denied"
    # Nor is it the task's to signal, under either runtime: the task goes on to report.
    assert (status["phase"], status["reason"]) == ("Succeeded", "Completed"), status
    assert status["stdout"].splitlines()[1:] == ["SIGKILL to PID 1 refused", "still alive"]
    if GVISOR:
        # gVisor's kernel lets the task make a user namespace, inside the sandbox only (see
        # test_hostile's namespace case for what the host sees).
        assert facts["unshare_user"] == 0
        return
    assert facts["unshare_user"] == -1
    assert facts["unshare_errno"] == "EPERM"
