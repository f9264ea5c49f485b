"""One task's stdin cannot hold up the controller (issue #14), on the real engine.

An interactive task stops reading its stdin and a client floods it through
`WS /tasks/{id}/attach`. Meanwhile a task submitted after the flood must start and succeed
within seconds, `/healthz` must stay ok, and the flooded task must still end at its deadline.
"""

import asyncio
import json
import signal
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import docker
import websockets
from harness import Client, HealthProbe, Server, owned_containers, task_body

FLOOD_BYTES = 8 * 1024 * 1024  # a socket's buffers plus the supervisor's 1 MiB, many times
MESSAGE_CHARS = 64 * 1024  # the largest data message the attach endpoint takes
MESSAGES = FLOOD_BYTES // MESSAGE_CHARS
# Between messages, so that the controller passes input on while the flood goes on: what the
# task's stdin takes fills up, rather than only the database's bound for waiting input.
PACE_SECONDS = 0.02
TIMEOUT_SECONDS = 20
NEXT_TASK_WITHIN_SECONDS = 10.0  # submitted to Succeeded; an idle one takes well under 1 s
DEADLINE_SLACK_SECONDS = 5.0

# The supervisor (the task's parent) relays stdin to the task. Where the task may SIGSTOP it,
# the container's stdin fills at once; where it may not, the supervisor stops reading once its
# own buffer for the task is full, and the task simply never reads.
IGNORES_STDIN = """\
import os, signal, time
try:
    os.kill(os.getppid(), signal.SIGSTOP)
except OSError:
    pass
time.sleep(120)
"""


class Flood(threading.Thread):
    """Sends FLOOD_BYTES of stdin over one attach connection, then keeps reading what the
    server says until it closes the connection."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.sent = threading.Event()
        self.received: list[dict[str, Any]] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._talk())
        except BaseException as exc:
            self.error = exc

    async def _talk(self) -> None:
        message = json.dumps({"type": "data", "stream": "stdin", "data": "x" * MESSAGE_CHARS})
        async with websockets.connect(self.url, open_timeout=10, max_size=None) as ws:
            reader = asyncio.create_task(self._read(ws))
            for _ in range(MESSAGES):
                await ws.send(message)
                await asyncio.sleep(PACE_SECONDS)
            self.sent.set()
            async with asyncio.timeout(TIMEOUT_SECONDS + 60):
                await reader

    async def _read(self, ws: Any) -> None:
        try:
            async for raw in ws:
                self.received.append(json.loads(raw))
        except websockets.ConnectionClosed:
            pass

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.received if m.get("type") == kind]


def test_a_task_that_never_reads_its_flooded_stdin_holds_up_no_one(
    engine: docker.DockerClient, fresh_dir: Path
) -> None:
    server = Server(fresh_dir).start()
    client = Client(server.url)
    health = HealthProbe(server.url)
    try:
        body = task_body(IGNORES_STDIN, timeout=TIMEOUT_SECONDS) | {"interactive": True}
        attacker = client.submit(body)["id"]
        client.wait_for(attacker, timeout=30, phases={"Running"})
        health.start()

        flood = Flood(f"ws://127.0.0.1:{server.port}/tasks/{attacker}/attach")
        flood.start()
        assert flood.sent.wait(60), f"the flood was not taken: {flood.error!r}"

        submitted = time.monotonic()
        other = client.submit(task_body("print('unaffected')", timeout=30))["id"]
        finished = client.wait_for(other, timeout=NEXT_TASK_WITHIN_SECONDS)
        took = time.monotonic() - submitted
        assert finished["status"]["phase"] == "Succeeded", finished["status"]
        assert finished["status"]["result"] == "unaffected\n"

        ended = client.wait_for(attacker, timeout=TIMEOUT_SECONDS + DEADLINE_SLACK_SECONDS)
        status = ended["status"]
        assert (status["phase"], status["reason"]) == ("TimedOut", "DeadlineExceeded"), status
        ran = _seconds_between(status["started_at"], status["finished_at"])
        assert TIMEOUT_SECONDS <= ran < TIMEOUT_SECONDS + DEADLINE_SLACK_SECONDS, ran

        flood.join(30)
        assert flood.error is None, repr(flood.error)
        refusals = [m["message"] for m in flood.of_type("error")]
        assert refusals, "no input was refused: the flood did not fill the task's stdin"
        # More than the database's bound got in: the controller passed input on until the
        # task's stdin was full.
        assert MESSAGES - len(refusals) > 1024 * 1024 // MESSAGE_CHARS
        assert all("not reading its stdin" in words for words in refusals), refusals[:3]
        exits = flood.of_type("exit")
        assert exits and exits[-1]["phase"] == "TimedOut", flood.received[-3:]
        health.stop()
        assert not health.failures, health.failures[:3]
        print(
            f"\nnext task: submitted to Succeeded in {took:.2f} s; flooded task ran "
            f"{ran:.2f} s of {TIMEOUT_SECONDS}; {len(refusals)} of {MESSAGES} messages "
            f"refused; /healthz worst "
            f"{health.worst * 1000:.0f} ms"
        )
    finally:
        if health.is_alive():
            health.stop()
        # SIGKILL: a controller whose pass is stuck would not stop on SIGTERM.
        server.kill(signal.SIGKILL)
        for container in owned_containers(engine, server.owner):
            container.remove(force=True)


def _seconds_between(start: str, end: str) -> float:
    parse = lambda text: datetime.fromisoformat(text.replace("Z", "+00:00"))  # noqa: E731
    return (parse(end) - parse(start)).total_seconds()
