"""`Client` and `AsyncClient` against a real `taskyard serve` on the real Docker engine: the
README's quick start, `run` past one wait, paging, watching, logs, cancelling, the round trip
of a spec, and typed errors."""

import asyncio
import contextlib
import io
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from client_async import run_async
from harness import Server

from taskyard import AsyncClient, Client, Conflict, InvalidRequest, TaskNotFound, WaitTimeout
from taskyard.client import Task

README = Path(__file__).resolve().parents[2] / "README.md"
SMALL = {"ram": "64MB", "storage": "16MB"}
SLEEPER = "import time; time.sleep({}); print('slept')"


class Counting(httpx.HTTPTransport):
    """The real transport, keeping every request's path and query."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(f"{request.method} {request.url.path}?{request.url.query.decode()}")
        return super().handle_request(request)


class AsyncCounting(httpx.AsyncHTTPTransport):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(f"{request.method} {request.url.path}?{request.url.query.decode()}")
        return await super().handle_async_request(request)


@pytest.fixture
def client(live_server: Server) -> Iterator[Client]:
    with Client(live_server.url) as opened:
        yield opened


def quick_start() -> str:
    """The Python block of the README's "From Python" section."""
    section = README.read_text().split("## From Python", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None
    return match.group(1)


def test_the_readme_quick_start_runs_twenty_snippets(
    live_server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TASKYARD_SERVER", live_server.url)
    code = quick_start()
    assert len(code.strip().splitlines()) <= 10
    printed = io.StringIO()

    with contextlib.redirect_stdout(printed):
        exec(compile(code, "README.md", "exec"), {})

    lines = printed.getvalue().splitlines()
    assert lines == [f"Succeeded {n * n}" for n in range(20)]


def test_run_waits_past_one_wait_by_waiting_again(live_server: Server) -> None:
    transport = Counting()
    with Client(live_server.url, wait_step=1, transport=transport) as client:
        task = client.run(SLEEPER.format(3), resources=SMALL, timeout=20)

    assert task.status.phase == "Succeeded" and task["status"]["stdout"] == "slept\n"
    waits = [line for line in transport.seen if line.endswith("?wait=1")]
    assert len(waits) >= 3  # about one per second of the task's three
    assert transport.seen[0] == "POST /tasks?"


def test_async_run_waits_past_one_wait_for_tasks_at_once(live_server: Server) -> None:
    transport = AsyncCounting()

    async def main() -> list[Task]:
        async with AsyncClient(live_server.url, wait_step=1, transport=transport) as client:
            return await asyncio.gather(
                *(
                    client.run(SLEEPER.format(2), resources={**SMALL, "cpu": "0"}, timeout=20)
                    for _ in range(2)
                )
            )

    tasks = run_async(main())

    assert [t.status.stdout for t in tasks] == ["slept\n", "slept\n"]
    assert len([line for line in transport.seen if line.endswith("?wait=1")]) >= 4


def test_wait_gives_up_after_max_wait(client: Client) -> None:
    task = client.submit(SLEEPER.format(30), resources=SMALL)
    try:
        with pytest.raises(WaitTimeout) as raised:
            client.wait(task.id, max_wait=0.5)
        assert raised.value.task.id == task.id and not raised.value.task.done
    finally:
        client.cancel(task.id)


def test_cancel_stops_a_task_and_a_second_cancel_is_a_conflict(client: Client) -> None:
    task = client.submit(SLEEPER.format(30), resources=SMALL)

    client.cancel(task.id)
    ended = client.wait(task.id, max_wait=30)

    assert (ended.status.phase, ended.status.reason) == ("Cancelled", "Cancelled")
    with pytest.raises(Conflict, match="already Cancelled"):
        client.cancel(task.id)


def test_list_pages_through_every_task(client: Client) -> None:
    mine = [client.submit("pass", resources={**SMALL, "cpu": "0"}).id for _ in range(3)]

    listed = [task.id for task in client.list(page_size=2)]
    first_three = [task.id for task in client.list(limit=3, page_size=2)]

    assert listed == [task.id for task in client.list_page(limit=500).items]
    assert first_three == mine[::-1] == listed[:3]

    async def async_ids() -> list[str]:
        async with AsyncClient(client.base_url) as async_client:
            return [task.id async for task in async_client.list(page_size=2)]

    assert run_async(async_ids()) == listed


def test_watch_and_logs_follow_a_task_to_its_end(client: Client) -> None:
    code = "import time\nfor i in range(3):\n    print(i, flush=True)\n    time.sleep(0.3)"
    task = client.submit(code, resources=SMALL)
    since = min(event.seq for event in client.events(task.id)) - 1

    chunks = list(client.logs(task.id, follow=True))
    transitions = list(client.watch(task.id, since=since))

    assert "".join(chunk.text for chunk in chunks) == "0\n1\n2\n"
    assert [(t.from_phase, t.to_phase) for t in transitions] == [
        (None, "Pending"),
        ("Pending", "Scheduled"),
        ("Scheduled", "Running"),
        ("Running", "Succeeded"),
    ]

    async def async_follow() -> tuple[str, list[str]]:
        async with AsyncClient(client.base_url) as async_client:
            text = "".join([c.text async for c in async_client.logs(task.id, follow=True)])
            phases = [t.to_phase async for t in async_client.watch(task.id, since=since)]
            return text, phases

    assert run_async(async_follow()) == (
        "0\n1\n2\n",
        ["Pending", "Scheduled", "Running", "Succeeded"],
    )


def test_a_tasks_spec_submitted_again_is_the_same_task(client: Client) -> None:
    first = client.run(
        "print(input())", resources={"cpu": "1", "ram": "64mb"}, stdin="x\n", timeout=9
    )

    again = client.run(**first.spec)

    assert again.spec == first.spec
    assert again.spec.resources.ram == "64mb"
    assert again.status.stdout == first.status.stdout == "x\n"


def test_errors_are_typed_and_name_what_is_wrong(client: Client) -> None:
    with pytest.raises(TaskNotFound, match="no-such-task") as missing:
        client.get("no-such-task")
    assert missing.value.task_id == "no-such-task"
    with pytest.raises(InvalidRequest, match=r"resources\.ram"):
        client.submit("pass", resources={"ram": "1KB"})

    async def async_missing() -> None:
        async with AsyncClient(client.base_url) as async_client:
            await async_client.wait("no-such-task")

    with pytest.raises(TaskNotFound, match="no-such-task"):
        run_async(async_missing())
