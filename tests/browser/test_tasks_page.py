"""The task table, the submit form and a task's page, as a person uses them."""

import re
from datetime import datetime

import pytest
from dashboard import (
    ACTIVE,
    OUTPUT_LIMIT,
    TASK_SECONDS,
    assert_never_reloaded,
    fill_form,
    open_dashboard,
    row,
    screenshot,
)
from harness import Client, Server, task_body
from playwright.sync_api import Page, Request, expect

from models.settings import Settings
from taskyard.client import DEFAULT_RESOURCES

TASK_URL = re.compile(r"#/tasks/([0-9a-f]{32})$")


def submitted_id(page: Page) -> str:
    expect(page).to_have_url(TASK_URL)
    match = TASK_URL.search(page.url)
    assert match is not None
    return match.group(1)


def test_a_task_submitted_in_the_form_succeeds_in_the_table_without_a_reload(
    page: Page, server: Server, client: Client
) -> None:
    open_dashboard(page, server.url, "#/submit")
    fill_form(
        page,
        code="import time\ntime.sleep(3)\nprint('from the form')\n",
        cpu="1",
        gpu="0",
        ram="64MB",
        storage="16MB",
        timeout_seconds="30",
    )
    page.click("#submit-button")
    task_id = submitted_id(page)

    page.get_by_role("navigation").get_by_role("link", name="Tasks").click()
    task_row = row(page, task_id)
    expect(task_row.locator(".phase")).to_have_text(ACTIVE)
    element = task_row.element_handle()
    assert element is not None
    screenshot(page, "table-task-active")

    expect(task_row.locator(".phase")).to_have_text("Succeeded", timeout=TASK_SECONDS)
    assert element.evaluate("el => el.isConnected"), "the row was replaced, not updated"
    assert_never_reloaded(page)
    expect(page.locator("#task-rows tr").first).to_have_attribute("data-task-id", task_id)
    screenshot(page, "table-task-succeeded")
    task = client.get(task_id)
    assert task["status"]["stdout"] == "from the form\n"
    assert task["spec"]["resources"] == {"cpu": "1", "gpu": "0", "ram": "64MB", "storage": "16MB"}


def test_the_task_page_follows_a_seed_example_live(page: Page, server: Server) -> None:
    open_dashboard(page, server.url, "#/submit")
    page.select_option("#example", "count")
    expect(page.locator("#code")).to_have_value("for i in range(5): print(f'Count {i}')")
    page.click("#submit-button")
    submitted_id(page)

    expect(page.locator(".task-head .phase")).to_have_text("Succeeded", timeout=TASK_SECONDS)
    stdout = page.locator('[data-stream="stdout"] pre')
    expect(stdout).to_have_text("Count 0\nCount 1\nCount 2\nCount 3\nCount 4\n")
    timeline = page.locator(".timeline li")
    expect(timeline).to_have_count(4)
    expect(timeline.locator(".phase")).to_have_text(
        ["Pending", "Scheduled", "Running", "Succeeded"]
    )
    expect(page.locator(".code .tok-keyword").first).to_have_text("for")
    expect(page.locator(".code .tok-string")).to_have_text("f'Count {i}'")
    expect(page.get_by_role("button", name="Cancel task")).to_be_hidden()
    assert_never_reloaded(page)
    screenshot(page, "task-page-succeeded")


def test_code_and_output_from_a_task_are_shown_as_text_never_as_markup(
    page: Page, server: Server, client: Client
) -> None:
    markup = '<img src=x onerror="window.__pwned=1"><b>bold</b>'
    task = client.submit(task_body(f"print({markup!r})\n# {markup}\n"), wait=30)
    assert task["status"]["phase"] == "Succeeded"
    open_dashboard(page, server.url, f"#/tasks/{task['id']}")

    expect(page.locator('[data-stream="stdout"] pre')).to_have_text(markup + "\n")
    expect(page.locator(".code")).to_contain_text(markup)
    expect(page.locator("main img")).to_have_count(0)
    expect(page.locator("main b")).to_have_count(0)
    assert page.evaluate("window.__pwned") is None


def test_output_cut_at_the_cap_is_marked_truncated(
    page: Page, server: Server, client: Client
) -> None:
    code = f"import sys\nprint('x' * {2 * OUTPUT_LIMIT})\nprint('short', file=sys.stderr)\n"
    task = client.submit(task_body(code), wait=30)
    assert task["status"]["stdout_truncated"] is True
    open_dashboard(page, server.url, f"#/tasks/{task['id']}")

    stdout = page.locator('[data-stream="stdout"]')
    stderr = page.locator('[data-stream="stderr"]')
    expect(stdout.get_by_text("truncated", exact=True)).to_be_visible()
    expect(stderr.get_by_text("truncated", exact=True)).to_be_hidden()
    expect(stderr.locator("pre")).to_have_text("short\n")
    assert len(stdout.locator("pre").inner_text()) <= OUTPUT_LIMIT


def test_cancel_on_the_task_page_stops_a_running_task(
    page: Page, server: Server, client: Client
) -> None:
    task = client.submit(task_body("import time\ntime.sleep(60)\n", timeout=120))
    client.wait_for(task["id"], phases={"Running"})
    open_dashboard(page, server.url, f"#/tasks/{task['id']}")
    expect(page.locator(".task-head .phase")).to_have_text("Running")

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Cancel task").click()
    expect(page.locator(".task-head .phase")).to_have_text("Cancelled", timeout=TASK_SECONDS)
    assert client.get(task["id"])["status"]["reason"] == "Cancelled"


FORM_OK = {
    "code": "print(1)",
    "cpu": "1",
    "gpu": "0",
    "ram": "64MB",
    "storage": "16MB",
    "timeout_seconds": "30",
}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param("ram", "512KB", id="ram-512KB"),
        pytest.param("ram", "5MB", id="ram-below-engine-minimum"),
        pytest.param("ram", "512", id="ram-without-unit"),
        pytest.param("storage", "1 GB", id="storage-with-space"),
        pytest.param("storage", "0MB", id="storage-zero"),
        pytest.param("cpu", "1.5", id="cpu-fraction"),
        pytest.param("gpu", "-1", id="gpu-negative"),
        pytest.param("cpu", "٣", id="cpu-non-ascii-digit"),
        pytest.param("timeout_seconds", "0", id="timeout-zero"),
    ],
)
def test_a_broken_rule_shows_the_apis_message_inline_and_sends_nothing(
    page: Page, server: Server, client: Client, field: str, value: str
) -> None:
    posts: list[Request] = []
    page.on("request", lambda request: posts.append(request) if request.method == "POST" else None)
    open_dashboard(page, server.url, "#/submit")
    fill_form(page, **{**FORM_OK, field: value})
    page.click("#submit-button")

    error = page.locator(f"#{field}-error")
    expect(error).to_be_visible()
    expect(page.locator(f"#{field}")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#submit-status")).to_have_text("Fix the marked fields; nothing was sent.")
    assert posts == []
    expect(page).to_have_url(re.compile(r"#/submit$"))
    if field == "ram" and value == "512KB":
        screenshot(page, "submit-inline-error-ram-512KB")

    # The same body sent to the API is refused with the same sentence for the same field.
    resources = {name: FORM_OK[name] for name in ("cpu", "gpu", "ram", "storage")}
    body = {
        "task_type": "execute_code",
        "code": "print(1)",
        "resources": resources,
        "timeout_seconds": 30,
    }
    if field == "timeout_seconds":
        body["timeout_seconds"] = int(value)
    else:
        resources[field] = value
    response = client.http.post("/tasks", json=body)
    assert response.status_code == 422
    messages = [
        entry["msg"].removeprefix("Value error, ")
        for entry in response.json()["detail"]
        if entry["loc"][-1] == field
    ]
    expect(error).to_have_text(messages[0])


def test_a_request_the_host_cannot_fit_shows_the_servers_message_by_its_field(
    page: Page, server: Server
) -> None:
    open_dashboard(page, server.url, "#/submit")
    fill_form(page, **{**FORM_OK, "cpu": "4096"})
    page.click("#submit-button")

    error = page.locator("#cpu-error")
    expect(error).to_be_visible()
    expect(error).to_have_text(re.compile(r"^requested 4096 CPUs, this host can allocate \d+$"))
    expect(page.locator("#submit-status")).to_contain_text("HTTP 422")
    expect(page).to_have_url(re.compile(r"#/submit$"))


def test_filter_by_phase_and_search_by_id(page: Page, server: Server, client: Client) -> None:
    done = client.submit(task_body("print('done')"), wait=30)
    failed = client.submit(task_body("raise SystemExit(3)"), wait=30)
    assert (done["status"]["phase"], failed["status"]["phase"]) == ("Succeeded", "Failed")
    open_dashboard(page, server.url)
    expect(row(page, failed["id"])).to_be_visible()

    page.select_option("#phase-filter", "Failed")
    expect(row(page, done["id"])).to_be_hidden()
    expect(row(page, failed["id"])).to_be_visible()
    for phase in page.locator("#task-rows tr:visible .phase").all_inner_texts():
        assert phase == "Failed"

    page.select_option("#phase-filter", "")
    page.fill("#id-search", done["id"][:10])
    expect(row(page, done["id"])).to_be_visible()
    expect(row(page, failed["id"])).to_be_hidden()
    expect(page.locator("#table-summary")).to_contain_text("1 of")


def test_the_page_of_an_unknown_task_says_not_found(page: Page, server: Server) -> None:
    unknown = "0" * 32
    open_dashboard(page, server.url, f"#/tasks/{unknown}")
    expect(page.locator(".task-head .phase")).to_have_text("not found")
    expect(page.locator("#view-task [role=alert]")).to_contain_text(f"No task {unknown} was found")
    expect(page.locator("#view-task")).not_to_contain_text("Loading")
    screenshot(page, "task-not-found")


def test_a_row_shows_the_first_line_of_the_code_and_a_finished_tasks_run_time(
    page: Page, server: Server, client: Client
) -> None:
    code = "\n# counts to three\nfor i in range(3):\n    print(i)\n"
    task = client.submit(task_body(code), wait=30)
    status = task["status"]
    assert status["phase"] == "Succeeded"
    ran = datetime.fromisoformat(status["finished_at"]) - datetime.fromisoformat(
        status["started_at"]
    )
    waiting = client.submit(task_body("import time\ntime.sleep(30)\n", timeout=60))
    try:
        open_dashboard(page, server.url)
        finished = row(page, task["id"])
        expect(finished.locator(".code-line")).to_have_text("# counts to three")
        shown = finished.locator(".run-time").text_content() or ""
        match = re.fullmatch(r"(\d+\.\d) s", shown)
        assert match, f"run time shown as {shown!r}"
        assert abs(float(match.group(1)) - ran.total_seconds()) < 0.11, (shown, ran)
        # A task that has not finished has no run time yet.
        expect(row(page, waiting["id"]).locator(".run-time")).to_have_text("—")

        finished.get_by_role("link").click()
        expect(page.locator(".status-line")).to_contain_text(f"ran {shown}")
        expect(page.locator(".spec")).to_contain_text(f"run time{shown}")
    finally:
        client.http.delete(f"/tasks/{waiting['id']}")


def test_the_forms_defaults_are_the_command_lines(page: Page, server: Server) -> None:
    open_dashboard(page, server.url, "#/submit")
    for name, value in DEFAULT_RESOURCES.items():
        expect(page.locator(f"#{name}")).to_have_value(value)
    expect(page.locator("#timeout_seconds")).to_have_value(
        str(Settings.model_fields["default_timeout_seconds"].default)
    )
