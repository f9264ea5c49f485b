"""A task's page shows stdout and stderr while the task runs (GET /tasks/{id}/logs?follow=true,
read with fetch), and the final output once it ends."""

import time

from dashboard import TASK_SECONDS, assert_never_reloaded, open_dashboard, screenshot
from harness import Client, Server, task_body
from playwright.sync_api import Locator, Page, expect

LINES = "".join(f"line {i}\n" for i in range(10))
ERRORS = "".join(f"err {i}\n" for i in range(0, 10, 3))
TEN_LINES = (
    "import sys, time\n"
    "for i in range(10):\n"
    "    print(f'line {i}', flush=True)\n"
    "    if i % 3 == 0:\n"
    "        print(f'err {i}', file=sys.stderr, flush=True)\n"
    "    time.sleep(0.3)\n"
)

# Runs before the page's own scripts: keeps every text the stdout box ever showed, and the
# abort signal of every /logs stream the page opens (the page aborts a stream it is done
# with), so a test can see what a person saw along the way.
RECORDER = """
window.__stdoutSeen = [];
new MutationObserver(() => {
  const pre = document.querySelector('[data-stream="stdout"] pre');
  const text = pre ? pre.textContent : "";
  const seen = window.__stdoutSeen;
  if (seen[seen.length - 1] !== text) seen.push(text);
}).observe(document, { childList: true, subtree: true, characterData: true });
window.__logStreams = [];
const nativeFetch = window.fetch;
window.fetch = (url, init = {}) => {
  if (String(url).includes("/logs")) window.__logStreams.push(init.signal);
  return nativeFetch(url, init);
};
"""
# The state of each /logs stream the page opened: 2 once the page closed it, else 1.
LOG_SOURCES = "window.__logStreams.map(s => s.aborted ? 2 : 1)"
CLOSED = 2
AT_END = "el => el.scrollHeight - el.scrollTop - el.clientHeight < 2"


def stdout_box(page: Page) -> Locator:
    return page.locator('[data-stream="stdout"] pre')


def wait_until_log_sources_closed(page: Page, count: int) -> None:
    page.wait_for_function(
        f"(n) => {{ const s = {LOG_SOURCES}; "
        f"return s.length === n && s.every(r => r === {CLOSED}); }}",
        arg=count,
    )


def test_output_appears_while_the_task_runs_each_line_once_and_in_order(
    page: Page, server: Server, client: Client
) -> None:
    page.add_init_script(RECORDER)
    task = client.submit(task_body(TEN_LINES, timeout=60))
    open_dashboard(page, server.url, f"#/tasks/{task['id']}")
    stdout = stdout_box(page)
    stderr = page.locator('[data-stream="stderr"] pre')

    expect(stdout).to_contain_text("line 2", timeout=TASK_SECONDS)
    phase = client.get(task["id"])["status"]["phase"]
    shown = stdout.text_content() or ""
    assert phase == "Running", f"line 2 was first seen with the task {phase}"
    assert shown.startswith("line 0\nline 1\nline 2\n"), shown
    expect(stderr).to_contain_text("err 0")
    assert client.get(task["id"])["status"]["phase"] == "Running"
    expect(page.locator(".task-head .phase")).to_have_text("Running")
    screenshot(page, "task-page-live-output")

    expect(page.locator(".task-head .phase")).to_have_text("Succeeded", timeout=TASK_SECONDS)
    expect(stdout).to_have_text(LINES)
    expect(stderr).to_have_text(ERRORS)
    # Every text the box showed on the way was the start of the final one: no line twice,
    # none out of order, nothing from stderr; and it grew in steps, not all at the end.
    seen: list[str] = page.evaluate("window.__stdoutSeen")
    wrong = [text for text in seen if not LINES.startswith(text)]
    assert wrong == [], f"the stdout box showed {wrong[0]!r}"
    assert len([text for text in seen if text]) >= 3, seen
    # After `end` the stream is closed, not reconnected (the same one, and only one).
    wait_until_log_sources_closed(page, 1)
    assert_never_reloaded(page)
    screenshot(page, "task-page-live-output-succeeded")


def test_a_reader_at_the_end_is_kept_there_and_one_scrolled_up_is_left_alone(
    page: Page, server: Server, client: Client
) -> None:
    code = (
        "import time\n"
        "time.sleep(1)\n"
        "for i in range(150): print(f'row {i}', flush=True)\n"
        "time.sleep(3)\n"
        "for i in range(150, 300): print(f'row {i}', flush=True)\n"
        "time.sleep(1)\n"
    )
    task = client.submit(task_body(code, timeout=60))
    open_dashboard(page, server.url, f"#/tasks/{task['id']}")
    stdout = stdout_box(page)

    expect(stdout).to_contain_text("row 149", timeout=TASK_SECONDS)
    assert stdout.evaluate("el => el.scrollHeight > el.clientHeight"), "the box never overflowed"
    assert stdout.evaluate(AT_END), "the box did not follow the output to its end"
    assert client.get(task["id"])["status"]["phase"] == "Running"

    stdout.evaluate("el => { el.scrollTop = 0; }")  # the reader goes back to the top
    expect(stdout).to_contain_text("row 299", timeout=TASK_SECONDS)
    expect(page.locator(".task-head .phase")).to_have_text("Succeeded", timeout=TASK_SECONDS)
    assert stdout.evaluate("el => el.scrollTop") == 0, "the reader was pulled down"
    expect(stdout).to_have_text("".join(f"row {i}\n" for i in range(300)))


def test_leaving_the_page_of_a_running_task_closes_its_output_stream(
    page: Page, server: Server, client: Client
) -> None:
    page.add_init_script(RECORDER)
    task = client.submit(task_body("import time\ntime.sleep(60)\n", timeout=120))
    try:
        client.wait_for(task["id"], phases={"Running"})
        open_dashboard(page, server.url, f"#/tasks/{task['id']}")
        page.wait_for_function(f"{LOG_SOURCES}.join() === '1'")  # one stream, OPEN

        page.get_by_role("link", name="← All tasks").click()
        wait_until_log_sources_closed(page, 1)
        time.sleep(0.5)
        assert page.evaluate(LOG_SOURCES) == [CLOSED], "the stream was opened again"
    finally:
        client.http.delete(f"/tasks/{task['id']}")
