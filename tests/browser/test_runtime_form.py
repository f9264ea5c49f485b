"""Runtimes, files in and out, and usage, as a person uses them in the dashboard: the runtime
picker, local files sent with the task, the collected files and images on the task's page."""

import base64
import contextlib
import re
from pathlib import Path

import pytest
from dashboard import TASK_SECONDS, open_dashboard, row, screenshot
from harness import Client, Server, task_body
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page, expect

TASK_URL = re.compile(r"#/tasks/([0-9a-f]{32})$")
# What the page writes for a time in seconds, and for a size.
SECONDS = re.compile(r"^\d+(\.\d+)? s$|^\d+ (min|h)")
SIZE = re.compile(r"^\d+(\.\d)? (B|KB|MB|GB)$")
# A small SVG that would set a flag in the page were it ever run as markup.
HOSTILE_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="40" height="20">'
    '<script>window.parent.__pwned = 1</script><rect width="40" height="20" fill="teal"/></svg>'
)


def submitted_id(page: Page) -> str:
    expect(page).to_have_url(TASK_URL)
    match = TASK_URL.search(page.url)
    assert match is not None
    return match.group(1)


def add_file(page: Page, name: str, content: bytes) -> None:
    page.locator("#extras > summary").click()
    page.set_input_files(
        "#files", files=[{"name": name, "mimeType": "application/octet-stream", "buffer": content}]
    )
    expect(page.locator("#file-list li")).to_have_count(1)


def test_the_runtime_picker_lists_what_get_runtimes_lists(
    page: Page, server: Server, client: Client
) -> None:
    listed = client.http.get("/runtimes").json()["items"]
    open_dashboard(page, server.url, "#/submit")

    options = page.locator("#runtime option")
    expect(options).to_have_count(len(listed))
    assert [option.get_attribute("value") for option in options.all()] == [
        runtime["name"] for runtime in listed
    ]
    expect(page.locator("#runtime")).to_have_value("python")
    python = next(runtime for runtime in listed if runtime["name"] == "python")
    version = re.search(r"\d+(\.\d+)+", python["version"])
    assert version is not None
    expect(page.locator("#runtime option[value=python]")).to_have_text(
        f"python · Python {version.group(0)}"
    )
    expect(page.locator("#runtime-hint")).to_contain_text(python["version"])

    # The code follows the runtime's language while it is still a hello world.
    page.select_option("#runtime", "node")
    expect(page.locator("#code")).to_have_value("console.log('Hello, World!');")
    expect(page.locator("#code-label")).to_have_text("Code (JavaScript, main.js)")
    page.fill("#code", "console.log(1 + 1);")
    page.select_option("#runtime", "bash")
    expect(page.locator("#code")).to_have_value("console.log(1 + 1);")
    expect(page.locator("#code")).to_have_attribute("placeholder", "echo 'Hello, World!'")


def test_a_bash_task_with_a_file_and_a_collect_glob_shows_its_usage_and_the_collected_file(
    page: Page, server: Server, client: Client, tmp_path: Path
) -> None:
    open_dashboard(page, server.url, "#/submit")
    page.select_option("#runtime", "bash")
    page.fill(
        "#code",
        'mkdir -p out\ntr a-z A-Z < greeting.txt > out/shout.txt\necho "$1 $GREETING"\n'
        f"printf '%s' '{HOSTILE_SVG}' > out/badge.svg\n",
    )
    add_file(page, "greeting.txt", b"hello from a file\n")
    expect(page.locator("#file-list li")).to_contain_text("18 B · text")
    page.fill("#args", "first")
    page.fill("#env", "GREETING=hi")
    page.fill("#collect", "out/*")
    page.click("#submit-button")
    task_id = submitted_id(page)

    expect(page.locator(".task-head .phase")).to_have_text("Succeeded", timeout=TASK_SECONDS)
    expect(page.locator(".runtime-badge")).to_have_text("bash")
    expect(page.locator('[data-stream="stdout"] pre')).to_have_text("first hi\n")
    expect(page.locator('[data-usage="wall time"]')).to_have_text(SECONDS)
    expect(page.locator('[data-usage="CPU time"]')).to_have_text(SECONDS)
    expect(page.locator('[data-usage="peak memory"]')).to_have_text(SIZE)

    collected = page.locator(".collected-list li")
    expect(collected).to_have_count(2)
    shout = page.locator('.collected-list li[data-name="out/shout.txt"]')
    expect(shout).to_contain_text("out/shout.txt 18 B")
    with page.expect_download() as download:
        shout.get_by_role("link").click()
    saved = tmp_path / "shout.txt"
    download.value.save_as(saved)
    assert download.value.suggested_filename == "shout.txt"
    assert saved.read_bytes() == b"HELLO FROM A FILE\n"

    # The SVG is an image, never markup: it shows, and its script does not run.
    badge = page.locator('.collected-list li[data-name="out/badge.svg"] img')
    expect(badge).to_have_attribute("src", re.compile(r"^data:image/svg\+xml;base64,"))
    page.wait_for_function(
        "img => img.complete && img.naturalWidth > 0", arg=badge.element_handle()
    )
    expect(page.locator("main svg")).to_have_count(0)
    assert page.evaluate("window.__pwned") is None
    # Opened on its own (as "open image in new tab" does), its script runs in an opaque
    # origin, away from the page's token in sessionStorage (a blob: URL would be this origin).
    alone = page.context.new_page()
    alone.goto(str(badge.get_attribute("src")))
    assert alone.evaluate("window.__pwned") == 1
    assert alone.evaluate("location.origin") == "null"
    # A download link opened on its own is saved, never rendered as this origin's page.
    with alone.expect_download() as opened, contextlib.suppress(PlaywrightError):
        alone.goto(str(page.locator('li[data-name="out/badge.svg"] a').get_attribute("href")))
    assert opened.value.suggested_filename != ""
    alone.close()
    screenshot(page, "task-page-collected-files")

    task = client.get(task_id)
    assert task["spec"]["runtime"] == "bash"
    assert task["spec"]["files"] == [
        {"name": "greeting.txt", "content": "hello from a file\n", "encoding": "utf8"}
    ]
    assert task["spec"]["args"] == ["first"]
    assert task["spec"]["env"] == {"GREETING": "hi"}
    assert task["spec"]["collect"] == ["out/*"]

    page.get_by_role("navigation").get_by_role("link", name="Tasks").click()
    expect(row(page, task_id).locator(".runtime")).to_have_text("bash")


def test_a_binary_file_goes_as_base64(page: Page, server: Server, client: Client) -> None:
    data = bytes(range(256))
    open_dashboard(page, server.url, "#/submit")
    page.select_option("#runtime", "bash")
    page.fill("#code", "wc -c < blob.bin")
    add_file(page, "blob.bin", data)
    expect(page.locator("#file-list li")).to_contain_text("256 B · binary")
    page.click("#submit-button")
    task = client.get(submitted_id(page), wait=30)
    assert task["spec"]["files"][0]["encoding"] == "base64"
    assert base64.b64decode(task["spec"]["files"][0]["content"]) == data
    assert task["status"]["stdout"].strip() == "256"


def test_a_png_collected_from_python_data_shows_as_an_image(
    page: Page, server: Server, client: Client
) -> None:
    code = (
        "import matplotlib.pyplot as plt\n"
        "plt.figure(figsize=(3, 2))\nplt.plot([1, 3, 2])\nplt.savefig('plot.png')\n"
    )
    body = {**task_body(code, ram="512MB", timeout=120), "runtime": "python-data"}
    task = client.wait_for(client.submit({**body, "collect": ["*.png"]})["id"], timeout=120)
    assert task["status"]["phase"] == "Succeeded", task["status"]
    open_dashboard(page, server.url, f"#/tasks/{task['id']}")

    image = page.locator('.collected-list li[data-name="plot.png"] img')
    expect(image).to_be_visible(timeout=TASK_SECONDS)
    page.wait_for_function(
        "img => img.complete && img.naturalWidth > 0", arg=image.element_handle()
    )
    assert image.evaluate("img => img.naturalWidth") == 300  # 3 inches at matplotlib's 100 dpi
    expect(page.locator(".runtime-badge")).to_have_text("python-data")
    screenshot(page, "task-page-collected-png")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        pytest.param("../up.txt", "name '../up.txt' has an empty, '.' or '..' part", id="dotdot"),
        pytest.param("main.py", "files[0].name 'main.py' is where the code goes", id="main-file"),
    ],
)
def test_a_bad_file_name_shows_the_apis_error_on_that_file(
    page: Page, server: Server, name: str, message: str
) -> None:
    open_dashboard(page, server.url, "#/submit")
    add_file(page, "data.txt", b"x")
    page.fill("#file-name-0", name)
    page.click("#submit-button")

    error = page.locator("#file-name-0-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text(message)
    expect(page.locator("#file-name-0")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#submit-status")).to_contain_text("HTTP 422")
    expect(page).to_have_url(re.compile(r"#/submit$"))

    # Removing the file clears it, and the form then sends the task.
    page.get_by_role("button", name=f"Remove {name}").click()
    expect(page.locator("#file-list li")).to_have_count(0)
    page.click("#submit-button")
    submitted_id(page)


def test_an_env_line_without_a_name_is_refused_before_sending(page: Page, server: Server) -> None:
    open_dashboard(page, server.url, "#/submit")
    page.locator("#extras > summary").click()
    page.fill("#env", "lower=1")
    page.click("#submit-button")
    expect(page.locator("#env-error")).to_have_text(
        "env name 'lower' must match [A-Z_][A-Z0-9_]* (at most 128 characters)"
    )
    expect(page).to_have_url(re.compile(r"#/submit$"))
