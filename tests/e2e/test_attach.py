"""WS /tasks/{id}/attach on the real engine: stdin in, output and exit out."""

import asyncio
import concurrent.futures
import json
from typing import Any

import websockets
from harness import EXAMPLE_2, Client, Server


async def _talk(url: str, send: list[dict[str, Any]]) -> list[dict[str, Any]]:
    received: list[dict[str, Any]] = []
    async with websockets.connect(url, open_timeout=10) as ws:
        for message in send:
            await ws.send(json.dumps(message))
        async with asyncio.timeout(30):
            try:
                async for raw in ws:
                    received.append(json.loads(raw))
            except websockets.ConnectionClosedError as exc:
                # The server closes with an application code (4400, 4404) after an error.
                received.append({"type": "closed", "code": exc.rcvd.code if exc.rcvd else None})
    return received


def talk(url: str, send: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run the conversation on a loop of its own thread: other fixtures (Playwright's) may
    hold a running event loop in this one."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, _talk(url, send)).result(timeout=60)


def _ws(server: Server, task_id: str) -> str:
    return f"ws://127.0.0.1:{server.port}/tasks/{task_id}/attach"


def test_an_interactive_task_echoes_what_the_client_sends(client: Client, server: Server) -> None:
    task = client.submit(
        {
            "task_type": "execute_code",
            "interactive": True,
            "timeout_seconds": 20,
            "code": (
                "import sys\nfor line in sys.stdin:\n    print('echo:', line.strip(), flush=True)"
            ),
            "resources": {"cpu": "1", "gpu": "0", "ram": "64MB", "storage": "16MB"},
        }
    )
    messages = talk(
        _ws(server, task["id"]),
        [
            {"type": "data", "stream": "stdin", "data": "one\n"},
            {"type": "data", "stream": "stdin", "data": "two\n"},
            {"type": "eof"},
        ],
    )

    stdout = "".join(m["data"] for m in messages if m["type"] == "data" and m["stream"] == "stdout")
    assert stdout == "echo: one\necho: two\n"
    assert messages[-1]["type"] == "exit"
    assert (messages[-1]["code"], messages[-1]["phase"]) == (0, "Succeeded")
    assert client.get(task["id"])["status"]["result"] == "echo: one\necho: two\n"


def test_the_timeout_still_applies_to_an_interactive_task(client: Client, server: Server) -> None:
    task = client.submit(
        {
            "task_type": "execute_code",
            "interactive": True,
            "timeout_seconds": 2,
            "code": "print('waiting', flush=True)\ninput()",
            "resources": {"cpu": "1", "gpu": "0", "ram": "64MB", "storage": "16MB"},
        }
    )
    messages = talk(_ws(server, task["id"]), [])  # sends nothing, never EOF
    stdout = "".join(m["data"] for m in messages if m["type"] == "data")
    assert stdout == "waiting\n"
    assert messages[-1]["type"] == "exit"
    assert messages[-1]["phase"] == "TimedOut"


def test_attach_refuses_unknown_and_non_interactive_tasks(client: Client, server: Server) -> None:
    plain = client.submit(EXAMPLE_2)
    for task_id, words in ((plain["id"], "interactive"), ("no-such-task", "not found")):
        messages = talk(_ws(server, task_id), [])
        assert messages[0]["type"] == "error"
        assert words in messages[0]["message"]
        assert messages[-1] == {"type": "closed", "code": 4400 if words == "interactive" else 4404}


def test_bad_messages_get_an_error_not_a_disconnect(client: Client, server: Server) -> None:
    task = client.submit(
        {
            "task_type": "execute_code",
            "interactive": True,
            "timeout_seconds": 20,
            "code": "print(input())",
            "resources": {"cpu": "1", "gpu": "0", "ram": "64MB", "storage": "16MB"},
        }
    )
    messages = talk(
        _ws(server, task["id"]),
        [
            {"type": "signal", "signal": "SIGKILL"},
            {"type": "data", "stream": "stdin", "data": "still here\n"},
            {"type": "eof"},
        ],
    )
    assert messages[0]["type"] == "error"
    assert "expected" in messages[0]["message"]
    assert "".join(m["data"] for m in messages if m["type"] == "data") == "still here\n"
    assert messages[-1]["phase"] == "Succeeded"
