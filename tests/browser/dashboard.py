"""What the browser tests share: opening the dashboard, waiting for what a person waits for,
and keeping screenshots as artefacts.

Test modules import this module, never `conftest` (several test folders have one).
"""

import os
import re
from pathlib import Path

from playwright.sync_api import Locator, Page, expect

ARTIFACTS = Path(os.environ.get("TASKYARD_ARTIFACTS", "/tmp/taskyard-artifacts"))
SCREENSHOTS: list[Path] = []  # listed at the end of the run by conftest.py
# The session server's cap per output stream: small, so a test can make the page mark
# truncated output.
OUTPUT_LIMIT = 4096

# A task goes through a container start and its own run; the engine can be slow under load.
TASK_SECONDS = 60_000
ACTIVE = re.compile(r"^(Pending|Scheduled|Running)$")


def admin_token(data_dir: Path) -> str:
    """The admin token a server generated into its data dir."""
    return (data_dir / "admin-token").read_text().strip()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def open_dashboard(page: Page, base_url: str, route: str = "#/") -> None:
    """Load the page and wait until its /watch stream is open."""
    page.goto(f"{base_url}/{route}")
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    # Set once; still there at the end of a test only if the page never reloaded.
    page.evaluate("window.__sameDocument = true")


def assert_never_reloaded(page: Page) -> None:
    assert page.evaluate("window.__sameDocument === true"), "the page reloaded"


def row(page: Page, task_id: str) -> Locator:
    return page.locator(f'#task-rows tr[data-task-id="{task_id}"]')


def fill_form(page: Page, **fields: str) -> None:
    for name, value in fields.items():
        page.fill(f"#{name}", value)


def screenshot(page: Page, name: str) -> Path:
    """Save a full-page screenshot as an artefact and print where it is."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    SCREENSHOTS.append(path)
    print(f"screenshot: {path}")
    return path
