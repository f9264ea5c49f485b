"""On a phone-sized screen every view fits the width and keeps its controls reachable."""

import pytest
from dashboard import TASK_SECONDS, open_dashboard, screenshot
from harness import EXAMPLE_2, Client, Server
from playwright.sync_api import Page, expect


@pytest.fixture(scope="module")
def finished(client: Client) -> str:
    task = client.submit(EXAMPLE_2, wait=30)
    assert task["status"]["phase"] == "Succeeded"
    return str(task["id"])


@pytest.mark.parametrize("view", ["tasks", "submit", "task", "admin"])
def test_each_view_fits_a_390_pixel_wide_screen(
    phone: Page, server: Server, finished: str, view: str
) -> None:
    route = {
        "tasks": "#/",
        "submit": "#/submit",
        "task": f"#/tasks/{finished}",
        "admin": "#/admin",
    }[view]
    open_dashboard(phone, server.url, route)
    if view == "task":
        expect(phone.locator(".task-head .phase")).to_have_text("Succeeded", timeout=TASK_SECONDS)
    if view == "tasks":
        expect(phone.locator(f'#task-rows tr[data-task-id="{finished}"]')).to_be_visible()
    overflow = phone.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"the {view} view is {overflow} px wider than the screen"
    for control in phone.locator(
        "main [data-view]:not([hidden]) :is(button, input, select, textarea, a):visible"
    ).all():
        box = control.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390, control
    screenshot(phone, f"phone-{view}")


def test_every_form_control_has_a_label(phone: Page, server: Server) -> None:
    for route in ("#/", "#/submit", "#/admin"):
        open_dashboard(phone, server.url, route)
        unlabelled = phone.evaluate("""() => [...document.querySelectorAll(
            'input, select, textarea')].filter(el => !el.labels || el.labels.length === 0)
            .map(el => el.id || el.outerHTML)""")
        assert unlabelled == [], f"{route}: {unlabelled}"
