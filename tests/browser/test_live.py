"""The live table after the API went away and came back: it resumes from the last event id,
and where that history was compacted meanwhile (410), it lists the tasks again."""

import signal
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest
from dashboard import TASK_SECONDS, assert_never_reloaded, open_dashboard, row, screenshot
from harness import Client, Server, owned_containers, task_body
from playwright.sync_api import Page, expect


@dataclass
class Split:
    """`taskyard api` and `taskyard controller` as two processes on one database."""

    data_dir: Path
    api: Server
    controller: Server

    def database(self) -> sqlite3.Connection:
        return sqlite3.connect(self.data_dir / "taskyard.db")

    def phase(self, task_id: str) -> str:
        with self.database() as db:
            (phase,) = db.execute("SELECT phase FROM tasks WHERE id = ?", (task_id,)).fetchone()
            return str(phase)

    def restart_api(self) -> None:
        self.api = Server(self.data_dir, verb="api", port=self.api.port).start()


@pytest.fixture
def split(engine: docker.DockerClient, fresh_dir: Path) -> Iterator[Split]:
    api = Server(fresh_dir, verb="api").start(wait_ready=False)
    parts = Split(fresh_dir, api, Server(fresh_dir, verb="controller", port=api.port).start())
    api.wait_ready()
    yield parts
    # SIGKILL: a graceful stop would wait out the page's open /watch stream.
    parts.api.kill(signal.SIGKILL)
    parts.controller.kill(signal.SIGTERM)
    for container in owned_containers(engine, parts.controller.owner):
        container.remove(force=True)


def finish_while_the_api_is_down(page: Page, split: Split) -> str:
    """A task runs; the API dies; the task ends unseen. Returns the task's id."""
    open_dashboard(page, split.api.url)
    task = Client(split.api.url).submit(task_body("import time\ntime.sleep(3)\n"))
    expect(row(page, task["id"]).locator(".phase")).to_have_text("Running", timeout=TASK_SECONDS)
    split.api.kill(signal.SIGKILL)
    expect(page.locator("#connection")).not_to_have_attribute("data-state", "live")
    deadline = time.monotonic() + TASK_SECONDS / 1000
    while split.phase(task["id"]) != "Succeeded":
        assert time.monotonic() < deadline, "the task did not finish while the API was down"
        time.sleep(0.1)
    expect(row(page, task["id"]).locator(".phase")).to_have_text("Running")
    return str(task["id"])


def test_a_transition_made_while_the_api_was_down_reaches_the_table(
    page: Page, split: Split
) -> None:
    task_id = finish_while_the_api_is_down(page, split)
    screenshot(page, "live-api-down")

    split.restart_api()
    # The browser reconnects with Last-Event-ID and gets the transition it missed; a watch
    # from "now" would leave the row Running.
    expect(page.locator("#connection")).to_have_attribute(
        "data-state", "live", timeout=TASK_SECONDS
    )
    expect(row(page, task_id).locator(".phase")).to_have_text("Succeeded")
    assert_never_reloaded(page)
    screenshot(page, "live-resumed")


def test_after_history_was_compacted_the_page_lists_the_tasks_again(
    page: Page, split: Split
) -> None:
    task_id = finish_while_the_api_is_down(page, split)
    # What the controller's compaction records: history now begins after the newest seq,
    # so a resume from the page's last event id is answered 410 Gone.
    with split.database() as db:
        (newest,) = db.execute("SELECT max(seq) FROM transitions").fetchone()
        db.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('transitions_compacted_through', ?)",
            (newest,),
        )

    split.restart_api()
    expect(page.locator("#connection")).to_have_attribute(
        "data-state", "live", timeout=TASK_SECONDS
    )
    expect(row(page, task_id).locator(".phase")).to_have_text("Succeeded")
    assert_never_reloaded(page)

    # And the fresh watch it opened is live: a new task shows up and finishes.
    later = Client(split.api.url).submit(task_body("print('after')"))
    expect(row(page, later["id"]).locator(".phase")).to_have_text("Succeeded", timeout=TASK_SECONDS)
