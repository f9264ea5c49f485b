"""The Admin page: the queue with its stuck tasks and a reset from it (against a controller that
died), capacity, user tokens created and revoked, and a reset by id; the admin token signs the
whole tab in."""

import re
import signal
from pathlib import Path

import docker
import httpx
from dashboard import TASK_SECONDS, admin_token, bearer, open_dashboard, row, screenshot
from harness import Client, Server, owned_containers, task_body
from playwright.sync_api import Dialog, Page, expect


def confirm(dialog: Dialog) -> None:
    dialog.accept()


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

        waiting = client.submit(task_body("# waits for a controller\nprint(1)\n"))
        open_dashboard(page, api.url, "#/admin")
        page.fill("#admin-token", (fresh_dir / "admin-token").read_text().strip())
        page.get_by_role("button", name="Sign in as admin").click()
        expect(page.locator("#account-text")).to_have_text("Signed in as admin")
        assert page.evaluate("sessionStorage.getItem('taskyard.token')")
        assert page.evaluate("localStorage.length") == 0

        queued = page.locator(f'#pending-list li[data-task-id="{waiting["id"]}"]')
        expect(queued.locator(".first-line")).to_have_text("# waits for a controller")

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
    page.get_by_role("button", name="Sign in as admin").click()
    expect(page.locator("#admin-message")).to_contain_text("HTTP 403")
    expect(page.locator("#admin-message")).to_contain_text("not the admin token")
    expect(page.locator("#admin-token")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0


def test_the_admin_page_shows_capacity_manages_tokens_and_resets_a_task(
    page: Page, own_server: Server
) -> None:
    url = own_server.url
    admin = admin_token(own_server.data_dir)
    client = Client(url)
    task = client.submit(task_body("import time\ntime.sleep(120)\n", timeout=300))
    client.wait_for(task["id"], phases={"Running"})

    open_dashboard(page, url, "#/admin")
    expect(page.locator("#admin-token-note")).to_contain_text("needs the admin token")
    page.fill("#admin-token", admin)
    page.get_by_role("button", name="Sign in as admin").click()
    expect(page.locator("#account-text")).to_have_text("Signed in as admin")
    cores = httpx.get(f"{url}/admin/capacity", headers=bearer(admin)).json()["cpu"]["allocatable"]
    expect(page.locator('#admin-capacity dd[data-resource="CPU cores"]')).to_have_text(
        f"1 of {cores} held, {cores - 1} free"
    )
    expect(page.locator("#token-list")).to_contain_text("No user tokens yet.")

    page.fill("#new-token-name", "alice")
    page.get_by_role("button", name="Create token").click()
    secret = page.locator("#new-token-secret")
    expect(secret).to_have_value(re.compile(r"^ty_"))
    alice = secret.input_value()
    token_row = page.locator("#token-list tr", has_text="alice")
    expect(token_row.locator(".state")).to_have_text("active")
    screenshot(page, "admin-token-created")
    assert httpx.get(f"{url}/tasks", headers=bearer(alice)).status_code == 200
    assert httpx.get(f"{url}/tasks").status_code == 401, "open mode did not end"
    page.get_by_role("button", name="Done").click()
    expect(secret).to_be_hidden()
    assert alice not in (page.locator("main").text_content() or "")

    # The admin token signed the whole tab in: the task views work in closed mode too.
    page.get_by_role("navigation").get_by_role("link", name="Tasks").click()
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    expect(row(page, task["id"]).locator(".phase")).to_have_text("Running")
    page.get_by_role("navigation").get_by_role("link", name="Admin").click()

    page.once("dialog", confirm)
    token_row.get_by_role("button", name="Revoke").click()
    expect(token_row.locator(".state")).to_contain_text("revoked")
    expect(token_row.get_by_role("button", name="Revoke")).to_have_count(0)
    assert httpx.get(f"{url}/tasks", headers=bearer(alice)).status_code == 401
    assert httpx.get(f"{url}/tasks").status_code == 200, "open mode did not come back"

    page.fill("#reset-id", task["id"])
    page.select_option("#reset-to", "Failed")
    page.once("dialog", confirm)
    page.get_by_role("button", name="Reset", exact=True).click()
    expect(page.locator("#admin-message")).to_contain_text("to Failed requested")
    status = client.wait_for(task["id"])["status"]
    assert (status["phase"], status["reason"]) == ("Failed", "AdminReset")
    expect(page.locator('#admin-capacity dd[data-resource="CPU cores"]')).to_have_text(
        f"0 of {cores} held, {cores} free", timeout=TASK_SECONDS
    )
    screenshot(page, "admin-page")
