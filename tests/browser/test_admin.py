"""Admin mode: the stuck list and a reset from it, against a controller that died."""

import signal
from pathlib import Path

import docker
from dashboard import TASK_SECONDS, open_dashboard, screenshot
from harness import Client, Server, owned_containers, task_body
from playwright.sync_api import Page, expect


def test_fail_a_task_from_the_stuck_list_after_its_controller_died(
    page: Page, engine: docker.DockerClient, fresh_dir: Path
) -> None:
    api = Server(fresh_dir, verb="api", env={"TASKYARD_CONTROLLER_STALE_SECONDS": "2"})
    api.start(wait_ready=False)
    controllers = [Server(fresh_dir, verb="controller", port=api.port).start()]
    try:
        api.wait_ready()
        client = Client(api.url)
        task = client.submit(task_body("import time\ntime.sleep(120)\n", timeout=300))
        client.wait_for(task["id"], phases={"Running"})
        controllers[0].kill(signal.SIGKILL)

        open_dashboard(page, api.url, "#/admin")
        page.fill("#admin-token", (fresh_dir / "admin-token").read_text().strip())
        page.get_by_role("button", name="Use token").click()
        assert page.evaluate("sessionStorage.getItem('taskyard.adminToken')")
        assert page.evaluate("localStorage.length") == 0

        item = page.locator(f'.stuck-item[data-task-id="{task["id"]}"]')
        expect(item.locator(".why")).to_contain_text(
            "no controller is running", timeout=TASK_SECONDS
        )
        expect(page.locator("#controller-state")).to_have_attribute("data-ok", "false")
        screenshot(page, "admin-stuck-list")

        dialogs: list[str] = []

        def accept(dialog):  # type: ignore[no-untyped-def]
            dialogs.append(dialog.message)
            dialog.accept()

        page.once("dialog", accept)
        item.get_by_role("button", name="Fail").click()
        expect(page.locator("#admin-message")).to_contain_text("to Failed requested")
        assert dialogs and "failed" in dialogs[0]
        assert client.get(task["id"])["status"]["reset_requested"] == "Failed"

        controllers.append(Server(fresh_dir, verb="controller", port=api.port).start())
        expect(item).to_have_count(0, timeout=TASK_SECONDS)
        expect(page.locator("#controller-state")).to_have_attribute(
            "data-ok", "true", timeout=TASK_SECONDS
        )
        status = client.wait_for(task["id"])["status"]
        assert (status["phase"], status["reason"]) == ("Failed", "AdminReset")

        page.get_by_role("navigation").get_by_role("link", name="Tasks").click()
        task_row = page.locator(f'#task-rows tr[data-task-id="{task["id"]}"]')
        expect(task_row.locator(".phase")).to_have_text("Failed")
        screenshot(page, "admin-reset-failed")
    finally:
        # SIGKILL: a graceful stop would wait out the page's open /watch stream.
        api.kill(signal.SIGKILL)
        for controller in controllers:
            controller.kill(signal.SIGTERM)
        for container in owned_containers(engine, controllers[0].owner):
            container.remove(force=True)


def test_a_wrong_admin_token_is_refused_and_forgotten(page: Page, server: Server) -> None:
    open_dashboard(page, server.url, "#/admin")
    page.fill("#admin-token", "not-the-token")
    page.get_by_role("button", name="Use token").click()
    expect(page.locator("#admin-message")).to_contain_text("HTTP 403")
    expect(page.locator("#admin-token")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('taskyard.adminToken')") is None
