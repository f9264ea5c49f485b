"""Watching transitions and the admin endpoints, end to end: real `taskyard` processes, the real
Docker engine, and clients that speak HTTP and Server-Sent Events to them.
"""

import contextlib
import json
import os
import queue
import signal
import stat
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest
from harness import Client, Server, owned_containers, task_body, task_of

TERMINAL = {"Succeeded", "Failed", "TimedOut", "Cancelled"}
QUICK_HEARTBEAT = {"TASKYARD_WATCH_HEARTBEAT_SECONDS": "0.5"}


class EventStream:
    """GET /watch read by a thread, so that each event is stamped the moment it arrives."""

    def __init__(
        self,
        url: str,
        *,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.events: queue.Queue[tuple[float, dict[str, Any]]] = queue.Queue()
        self.ended = threading.Event()
        self._stop = threading.Event()
        self._opened = threading.Event()
        self.status_code: int | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._read, args=(url, params, headers), daemon=True)
        self._thread.start()
        assert self._opened.wait(10), "the watch did not open"
        assert self.status_code == 200, self.error

    def _read(
        self, url: str, params: dict[str, Any] | None, headers: dict[str, str] | None
    ) -> None:
        try:
            with httpx.stream(
                "GET",
                url + "/watch",
                params=params,
                headers=headers,
                timeout=httpx.Timeout(10, read=30),
            ) as response:
                self.status_code = response.status_code
                self._opened.set()
                fields: dict[str, str] = {}
                for line in response.iter_lines():
                    if self._stop.is_set():
                        return
                    if line == "":
                        if fields:
                            self.events.put((time.time(), parse_event(fields)))
                        fields = {}
                    elif not line.startswith(":"):
                        name, _, value = line.partition(":")
                        fields[name] = value.removeprefix(" ")
        except BaseException as exc:  # reported by the test through `take`
            self.error = exc
        finally:
            self._opened.set()
            self.ended.set()

    def take(
        self, done: Callable[[list[dict[str, Any]]], bool], within: float
    ) -> list[tuple[float, dict[str, Any]]]:
        """Events as they come until `done(events so far)` holds; fail after `within` s."""
        deadline = time.monotonic() + within
        got: list[tuple[float, dict[str, Any]]] = []
        while not done([event for _, event in got]):
            left = deadline - time.monotonic()
            assert left > 0, f"gave up after {len(got)} events: {[e for _, e in got]}"
            try:
                got.append(self.events.get(timeout=min(left, 0.5)))
            except queue.Empty:
                assert not (self.ended.is_set() and self.events.empty()), (
                    f"the stream ended early ({self.error!r})"
                )
        return got

    def close(self, *, wait: float = 0) -> None:
        """Stop reading; the connection closes at the next line (a heartbeat at the latest)."""
        self._stop.set()
        if wait:
            self._thread.join(wait)
            assert not self._thread.is_alive(), "the watch did not close"


def parse_event(fields: dict[str, str]) -> dict[str, Any]:
    assert fields["event"] == "transition", fields
    data: dict[str, Any] = json.loads(fields["data"])
    assert fields["id"] == str(data["seq"])
    return data


def at(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def terminal_for(task_ids: set[str]) -> Callable[[list[dict[str, Any]]], bool]:
    def done(events: list[dict[str, Any]]) -> bool:
        ended = {e["task_id"] for e in events if e["to_phase"] in TERMINAL}
        return task_ids <= ended

    return done


@contextlib.contextmanager
def watching(url: str, **kwargs: Any) -> Iterator[EventStream]:
    stream = EventStream(url, **kwargs)
    try:
        yield stream
    finally:
        stream.close()


def containers_of(engine: docker.DockerClient, task_id: str) -> list[Any]:
    return [
        c
        for c in engine.containers.list(
            all=True, ignore_removed=True, filters={"label": "taskyard.owner"}
        )
        if task_of(c) == task_id
    ]


def admin_headers(data_dir: Path) -> dict[str, str]:
    return {"Authorization": "Bearer " + (data_dir / "admin-token").read_text().strip()}


def stop_all(engine: docker.DockerClient, *servers: Server) -> None:
    for server in servers:
        server.kill(signal.SIGTERM)
    owners = {s.owner for s in servers if (s.data_dir / "instance-id").exists()}
    for owner in owners:
        for container in owned_containers(engine, owner):
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True)


# --- one service process ----------------------------------------------------------------------


def test_a_watcher_sees_a_task_go_from_pending_to_succeeded(server: Server, client: Client) -> None:
    with watching(server.url) as stream:
        task = client.submit(task_body("print('watched')"))
        got = stream.take(terminal_for({task["id"]}), within=30)

    mine = [event for _, event in got if event["task_id"] == task["id"]]
    assert [(e["from_phase"], e["to_phase"]) for e in mine] == [
        (None, "Pending"),
        ("Pending", "Scheduled"),
        ("Scheduled", "Running"),
        ("Running", "Succeeded"),
    ]
    assert mine == client.events(task["id"])
    assert client.get(task["id"])["status"]["result"] == "watched\n"


def test_a_reconnect_with_last_event_id_misses_nothing_and_repeats_nothing(
    server: Server, client: Client
) -> None:
    body = task_body("import time\nprint('tick', flush=True)\ntime.sleep(0.3)")
    with watching(server.url) as first:
        ids = {client.submit(body)["id"] for _ in range(5)}
        before = [event for _, event in first.take(lambda events: len(events) >= 6, within=30)]
    last_seen = before[-1]["seq"]
    time.sleep(0.5)  # the tasks keep changing while nobody watches

    with watching(server.url, headers={"Last-Event-ID": str(last_seen)}) as second:
        unfinished = ids - {e["task_id"] for e in before if e["to_phase"] in TERMINAL}
        after = [event for _, event in second.take(terminal_for(unfinished), within=45)]

    assert after and after[0]["seq"] > last_seen
    seen = [e["seq"] for e in before + after if e["task_id"] in ids]
    recorded = sorted(e["seq"] for task_id in ids for e in client.events(task_id))
    assert seen == recorded  # in order, every one, once
    assert len(set(seen)) == len(seen)
    assert all(client.get(task_id)["status"]["phase"] == "Succeeded" for task_id in ids)


def test_the_admin_token_file_is_0600_and_wrong_or_missing_tokens_are_refused(
    server: Server,
) -> None:
    path = server.data_dir / "admin-token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    good = admin_headers(server.data_dir)
    http = httpx.Client(base_url=server.url, timeout=10)

    capacity = http.get("/admin/capacity", headers=good)
    assert capacity.status_code == 200, capacity.text
    cpu = capacity.json()["cpu"]
    assert cpu["allocatable"] >= 1
    assert cpu["allocated"] + cpu["free"] == cpu["allocatable"]
    stuck = http.get("/admin/tasks/stuck", headers=good)
    assert stuck.status_code == 200
    assert stuck.json()["controller"]["ok"] is True
    assert http.post("/admin/tasks/no-such-task/reset", headers=good).status_code == 404

    for method, route in (
        ("GET", "/admin/capacity"),
        ("GET", "/admin/tasks/stuck"),
        ("POST", "/admin/tasks/no-such-task/reset"),
    ):
        missing = http.request(method, route)
        assert missing.status_code == 401, route
        assert missing.headers["www-authenticate"] == "Bearer"
        wrong = http.request(method, route, headers={"Authorization": "Bearer not-the-token"})
        assert wrong.status_code == 403, route


# --- the API and the controller as separate processes -----------------------------------------


def test_a_watcher_on_the_api_process_sees_the_controller_process_promptly(
    engine: docker.DockerClient, fresh_dir: Path
) -> None:
    """Also: after a restart of the API process, a watcher resumes with Last-Event-ID."""
    api = Server(fresh_dir, verb="api", env=QUICK_HEARTBEAT).start(wait_ready=False)
    controller = Server(fresh_dir, verb="controller", port=api.port).start()
    restarted: Server | None = None
    try:
        api.wait_ready()
        client = Client(api.url)
        stream = EventStream(api.url)
        ids = {client.submit(task_body(f"print({n})"))["id"] for n in range(4)}
        got = stream.take(terminal_for(ids), within=40)
        stream.close(wait=5)

        mine = [(arrived, e) for arrived, e in got if e["task_id"] in ids]
        by_controller = [(arrived, e) for arrived, e in mine if e["from_phase"] is not None]
        assert {e["to_phase"] for _, e in by_controller} == {"Scheduled", "Running", "Succeeded"}
        assert len(by_controller) == 3 * len(ids)
        delays = [arrived - at(e["at"]) for arrived, e in by_controller]
        median = statistics.median(delays)
        print(
            f"\ntransition delay, controller commit to watcher (separate processes): "
            f"median {median * 1000:.1f} ms, max {max(delays) * 1000:.1f} ms "
            f"over {len(delays)} transitions"
        )
        assert median < 1.0
        assert min(delays) > -0.5  # `at` is the controller's clock, on this same host
        seqs = [e["seq"] for _, e in mine]
        assert seqs == sorted(s["seq"] for task_id in ids for s in client.events(task_id))

        # Restart the API process; the watcher comes back with the last id it had seen.
        middle = seqs[len(seqs) // 2]
        api.kill(signal.SIGTERM)
        restarted = Server(fresh_dir, verb="api", env=QUICK_HEARTBEAT).start()
        client = Client(restarted.url)
        with watching(restarted.url, headers={"Last-Event-ID": str(middle)}) as resumed:
            more = {client.submit(task_body("print('more')"))["id"] for _ in range(2)}
            # Events come in seq order: once the new tasks ended, all that was owed is here.
            got = resumed.take(terminal_for(more), within=40)
        replayed = [e["seq"] for _, e in got if e["task_id"] in ids | more]
        recorded = sorted(
            s["seq"] for task_id in ids | more for s in client.events(task_id) if s["seq"] > middle
        )
        assert replayed == recorded
    finally:
        stop_all(engine, api, controller, *([restarted] if restarted else []))


def test_stopping_the_api_with_a_watcher_connected_ends_the_watch_promptly(
    fresh_dir: Path,
) -> None:
    api = Server(fresh_dir, verb="api", env=QUICK_HEARTBEAT).start(healthy=False)
    try:
        with watching(api.url) as stream:
            assert api.process is not None
            os.killpg(api.process.pid, signal.SIGTERM)  # as `docker stop` or systemd would
            try:
                api.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pytest.fail("taskyard api still runs 10 s after SIGTERM while a watch is open")
            assert stream.ended.wait(2), "the watch stayed open after the API stopped"
    finally:
        api.kill()


def test_a_task_stuck_without_a_controller_is_listed_and_reset_to_failed(
    engine: docker.DockerClient, fresh_dir: Path
) -> None:
    env = {"TASKYARD_CONTROLLER_STALE_SECONDS": "2", **QUICK_HEARTBEAT}
    api = Server(fresh_dir, verb="api", env=env).start(wait_ready=False)
    controller = Server(fresh_dir, verb="controller", port=api.port).start()
    successor: Server | None = None
    try:
        api.wait_ready()
        client = Client(api.url)
        admin = admin_headers(fresh_dir)
        task = client.submit(
            task_body("import time\nprint('up', flush=True)\ntime.sleep(60)", timeout=120)
        )
        task_id = task["id"]
        client.wait_for(task_id, phases={"Running"}, timeout=20)
        # "up" is printed before we pull the plug, so partial output exists.
        time.sleep(0.5)
        assert len(containers_of(engine, task_id)) == 1

        controller.kill(signal.SIGKILL)
        deadline = time.monotonic() + 15
        while True:
            stuck = client.http.get("/admin/tasks/stuck", headers=admin)
            assert stuck.status_code == 200
            listed = {item["task_id"]: item for item in stuck.json()["items"]}
            if task_id in listed:
                break
            assert time.monotonic() < deadline, stuck.json()
            time.sleep(0.2)
        assert stuck.json()["controller"]["ok"] is False
        assert listed[task_id]["phase"] == "Running"
        assert "no controller is running" in listed[task_id]["why"]

        reset = client.http.post(
            f"/admin/tasks/{task_id}/reset", json={"to": "Failed"}, headers=admin
        )
        assert reset.status_code == 200, reset.text
        assert reset.json()["status"]["reset_requested"] == "Failed"
        assert reset.json()["status"]["phase"] == "Running"

        with watching(api.url, params={"task_id": task_id}) as stream:
            successor = Server(fresh_dir, verb="controller", port=api.port).start()
            replay = [e for _, e in stream.take(terminal_for({task_id}), within=30)]
            assert stream.ended.wait(5), "a watch on one task ends after its terminal event"

        assert (replay[-1]["from_phase"], replay[-1]["to_phase"], replay[-1]["reason"]) == (
            "Running",
            "Failed",
            "AdminReset",
        )
        status = client.get(task_id)["status"]
        assert (status["phase"], status["reason"]) == ("Failed", "AdminReset")
        assert status["reset_requested"] is None
        assert status["stdout"] == "up\n"
        assert containers_of(engine, task_id) == []

        deadline = time.monotonic() + 10
        while True:
            stuck = client.http.get("/admin/tasks/stuck", headers=admin).json()
            if stuck["controller"]["ok"] and stuck["items"] == []:
                break
            assert time.monotonic() < deadline, stuck
            time.sleep(0.2)
    finally:
        stop_all(engine, api, controller, *([successor] if successor else []))
