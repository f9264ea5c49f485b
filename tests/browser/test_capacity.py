"""Capacity at a glance: which task holds which core, RAM and storage bars, and the queue."""

from typing import Any

from dashboard import TASK_SECONDS, open_dashboard, screenshot
from harness import HOST_CPUS, Client, Server, task_body
from playwright.sync_api import Page, Route, expect


def test_a_running_task_holds_a_core_in_the_grid_and_frees_it_after(
    page: Page, server: Server, client: Client
) -> None:
    open_dashboard(page, server.url)
    expect(page.locator('.cell[data-kind="cpu"]')).to_have_count(HOST_CPUS)
    task = client.submit(task_body("import time\ntime.sleep(4)\n", cpu="1", ram="64MB"))
    short = task["id"][:8]

    held = page.locator(f'.cell[data-kind="cpu"][data-task-id="{task["id"]}"]')
    expect(held).to_have_count(1, timeout=TASK_SECONDS)
    expect(held).to_have_attribute("data-state", "held")
    expect(held).to_have_attribute(
        "title", f"CPU {held.get_attribute('data-slot')}: held by task {short} (Running)"
    )
    held.click()
    expect(page.locator(".cap-detail")).to_contain_text(f"held by task {short}")
    expect(page.locator(".cap-detail a")).to_have_attribute("href", f"#/tasks/{task['id']}")
    expect(page.locator(".legend")).to_contain_text(short)
    ram = page.get_by_role("meter", name="RAM")
    assert int(ram.get_attribute("aria-valuenow") or 0) >= 64 * 1024 * 1024
    screenshot(page, "capacity-core-held")

    expect(held).to_have_count(0, timeout=TASK_SECONDS)
    expect(page.locator(".cap-detail")).to_contain_text("free")
    assert client.get(task["id"])["status"]["phase"] == "Succeeded"
    screenshot(page, "capacity-core-freed")


def test_the_queue_says_why_its_head_waits(page: Page, server: Server, client: Client) -> None:
    # One task takes every core; the next one, asking for a core, has to wait for it.
    hog = client.submit(task_body("import time\ntime.sleep(5)\n", cpu=str(HOST_CPUS)))
    client.wait_for(hog["id"], phases={"Running"})
    waiting = client.submit(task_body("print('next')", cpu="1"))
    open_dashboard(page, server.url)

    queue = page.locator(".queue")
    expect(queue).to_contain_text("Queue: 1 pending", timeout=TASK_SECONDS)
    expect(queue.locator("a")).to_have_text(waiting["id"][:8])
    expect(queue).to_contain_text("Insufficient cpu")
    screenshot(page, "capacity-queue-head-waits")

    expect(queue).to_contain_text("Queue: empty", timeout=TASK_SECONDS)
    assert client.wait_for(waiting["id"])["status"]["phase"] == "Succeeded"


def test_a_core_held_by_another_users_task_shows_as_held_without_naming_it(
    page: Page, server: Server, client: Client
) -> None:
    # What GET /capacity answers a user's token: another user's task holds the first core,
    # and its id is not shown (null).
    capacity: dict[str, Any] = client.http.get("/capacity").json()
    first = str(capacity["cpu"]["ids"][0])
    capacity["holders"]["cpus"] = {first: [None]}

    def answer(route: Route) -> None:
        route.fulfill(json=capacity)

    page.route("**/capacity", answer)
    open_dashboard(page, server.url)
    cell = page.locator(f'.cell[data-kind="cpu"][data-slot="{first}"]')
    expect(cell).to_have_attribute("data-state", "held")
    expect(cell).to_have_attribute("title", f"CPU {first}: held by another user's task")
    cell.click()
    expect(page.locator(".cap-detail")).to_have_text(f"CPU {first}: held by another user's task")
    expect(page.locator(".cap-detail a")).to_have_count(0)
    expect(page.locator(".legend li")).to_have_count(0)
