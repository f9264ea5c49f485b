"""Every runtime on the real engine, through a real server: hello world, stdin, a non-zero exit,
a compile error where there is a compile step; files in, files collected out, usage; and for
`python-data` a numpy product, a pandas group-by and a matplotlib PNG collected and decoded.
The images come from `taskyard image build --all` (deploy/test.sh runs it)."""

import base64
import struct
import time
import zlib
from typing import Any

import pytest
from harness import Client, task_body

HELLO = {
    "python": ("import sys\nprint('hello', sys.stdin.read())\nsys.exit(3)", "main.py"),
    "python-data": ("import sys\nprint('hello', sys.stdin.read())\nsys.exit(3)", "main.py"),
    "node": (
        "const s = require('fs').readFileSync(0, 'utf8');\n"
        "console.log('hello', s);\nprocess.exit(3);",
        "main.js",
    ),
    "bash": ('read line\necho "hello $line"\nexit 3', "main.sh"),
    "c": (
        '#include <stdio.h>\nint main(void) {\n  char s[64];\n  scanf("%63s", s);\n'
        '  printf("hello %s\\n", s);\n  return 3;\n}\n',
        "main.c",
    ),
    "cpp": (
        "#include <iostream>\n#include <string>\nint main() {\n  std::string s;\n"
        '  std::cin >> s;\n  std::cout << "hello " << s << std::endl;\n  return 3;\n}\n',
        "main.cpp",
    ),
    "java": (
        "import java.util.Scanner;\npublic class Main {\n  public static void main(String[] a) {\n"
        '    String s = new Scanner(System.in).next();\n    System.out.println("hello " + s);\n'
        "    System.exit(3);\n  }\n}\n",
        "Main.java",
    ),
}
BROKEN = {
    "c": "int main(void) { return undefined_name; }\n",
    "cpp": "int main() { return undefined_name; }\n",
    "java": "public class Main { public static void main(String[] a) { int x = ; } }\n",
}


def body(runtime: str, code: str, **fields: Any) -> dict[str, Any]:
    # Java's compiler wants more than the default 128MB.
    return {
        **task_body(code, ram="512MB", storage="128MB", timeout=60),
        "runtime": runtime,
        **fields,
    }


def run(client: Client, task: dict[str, Any]) -> dict[str, Any]:
    created = client.submit(task)
    return client.wait_for(created["id"], timeout=120)["status"]


@pytest.mark.parametrize("runtime", list(HELLO))
def test_hello_with_stdin_and_an_exit_code(client: Client, runtime: str) -> None:
    code, _ = HELLO[runtime]
    status = run(client, body(runtime, code, stdin="world\n"))
    assert status["phase"] == "Failed", status
    assert status["reason"] == "NonZeroExit"
    assert status["exit_code"] == 3
    assert status["stdout"].startswith("hello world")
    usage = status["usage"]
    assert usage is not None and usage["wall_seconds"] > 0 and usage["cpu_seconds"] > 0
    assert usage["peak_memory_bytes"] > 1 << 20


@pytest.mark.parametrize("runtime", list(BROKEN))
def test_a_failed_compile_is_a_compile_error_with_the_compilers_message(
    client: Client, runtime: str
) -> None:
    status = run(client, body(runtime, BROKEN[runtime]))
    assert status["phase"] == "Failed", status
    assert status["reason"] == "CompileError"
    assert "error" in status["result"]
    assert status["stdout"] == ""


def test_files_args_and_env_go_in_and_collected_files_come_out(client: Client) -> None:
    code = (
        'while read -r line; do echo "$line"; done < data/in.txt\n'
        'echo "$1 $MODE" > out/result.txt\n'
        "head -c 3 raw.bin > out/copy.bin\n"
    )
    files = [
        {"name": "data/in.txt", "content": "one\ntwo\n"},
        {
            "name": "raw.bin",
            "content": base64.b64encode(b"\x00\xff\x01").decode(),
            "encoding": "base64",
        },
        {"name": "out/.keep", "content": ""},
    ]
    status = run(
        client,
        body("bash", code, files=files, args=["first"], env={"MODE": "fast"}, collect=["out/*"]),
    )
    assert status["phase"] == "Succeeded", status
    assert status["stdout"] == "one\ntwo\n"
    collected = {file["name"]: base64.b64decode(file["content"]) for file in status["files"]}
    assert collected == {"out/copy.bin": b"\x00\xff\x01", "out/result.txt": b"first fast\n"}
    assert status["files_truncated"] is False


def test_files_are_collected_from_a_timed_out_run_too(client: Client) -> None:
    code = "import time\nopen('progress.txt', 'w').write('half way')\ntime.sleep(60)\n"
    task = {**body("python", code, collect=["*.txt"]), "timeout_seconds": 2}
    status = run(client, task)
    assert status["phase"] == "TimedOut", status
    assert [file["name"] for file in status["files"]] == ["progress.txt"]
    assert status["usage"] is not None and status["usage"]["wall_seconds"] >= 2


def test_python_data_multiplies_groups_and_plots(client: Client) -> None:
    code = (
        "import numpy as np, pandas as pd\n"
        "import matplotlib.pyplot as plt\n"
        "print(int((np.arange(4).reshape(2, 2) @ np.eye(2)).sum()))\n"
        "frame = pd.DataFrame({'k': ['a', 'b', 'a'], 'v': [1, 2, 3]})\n"
        "print(frame.groupby('k')['v'].sum().to_dict())\n"
        "plt.plot([1, 3, 2])\nplt.savefig('plot.png')\n"
    )
    status = run(client, body("python-data", code, collect=["*.png"]))
    assert status["phase"] == "Succeeded", status
    assert status["stdout"] == "6\n{'a': 4, 'b': 2}\n"
    (plot,) = status["files"]
    png = base64.b64decode(plot["content"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and plot["size"] == len(png)
    width, height = struct.unpack(">II", png[16:24])  # the IHDR chunk
    assert (width, height) == (640, 480)
    assert zlib.crc32(png[12:29]) == struct.unpack(">I", png[29:33])[0]


def test_runtimes_lists_every_built_image_with_its_version(client: Client) -> None:
    listed = client.http.get("/runtimes").json()
    by_name = {item["name"]: item for item in listed["items"]}
    assert set(by_name) == set(HELLO)
    assert by_name["python"]["version"].startswith("Python 3.")
    assert by_name["node"]["version"].startswith("v")
    assert "numpy" in by_name["python-data"]["packages"]


@pytest.mark.parametrize(
    ("runtime", "code", "reason"),
    [
        (
            "c",
            "#include <unistd.h>\nint main(void) { for (;;) fork(); }\n",
            None,
        ),
        (
            "java",
            "import java.util.*;\npublic class Main { public static void main(String[] a) {\n"
            "  List<long[]> l = new ArrayList<>(); for (;;) l.add(new long[1 << 20]); } }\n",
            None,
        ),
        (
            "node",
            # As fast as the pipe takes it: a loop that never yields would only fill Node's
            # own heap, since its writes to a pipe wait for the event loop.
            "const chunk = 'x'.repeat(65536);\n"
            "function pump() { while (process.stdout.write(chunk)) {} "
            "process.stdout.once('drain', pump); }\npump();\n",
            "DeadlineExceeded",
        ),
    ],
    ids=["fork-bomb-in-c", "memory-bomb-in-java", "output-flood-in-node"],
)
def test_hostile_code_in_other_languages_ends_within_its_limits(
    client: Client, runtime: str, code: str, reason: str | None
) -> None:
    task = {**body(runtime, code), "timeout_seconds": 5}
    status = run(client, task)
    assert status["phase"] in {"Failed", "TimedOut"}, status
    if reason is not None:
        assert status["reason"] == reason
    if runtime == "node":
        assert status["stdout_truncated"] is True
        assert len(status["stdout"]) <= 1 << 20


def test_files_are_collected_from_a_cancelled_run_too(client: Client) -> None:
    code = (
        "import time\nopen('progress.txt', 'w').write('started')\n"
        "print('ready', flush=True)\ntime.sleep(60)\n"
    )
    created = client.submit(body("python", code, collect=["*.txt"]))
    client.wait_for(created["id"], timeout=60, phases={"Running"})
    deadline = time.monotonic() + 30
    # Its output so far, live (the status holds it only once the task has ended).
    while "ready" not in client.http.get(f"/tasks/{created['id']}/logs").text:
        assert time.monotonic() < deadline, "the task never said it was ready"
        time.sleep(0.1)
    assert client.http.delete(f"/tasks/{created['id']}").status_code == 202
    status = client.wait_for(created["id"], timeout=60)["status"]
    assert status["phase"] == "Cancelled", status
    assert [file["name"] for file in status["files"]] == ["progress.txt"]
    assert status["usage"] is not None
