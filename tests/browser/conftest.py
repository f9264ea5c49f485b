"""Browser tests of the dashboard: Debian's Chromium, headless, driven by Playwright for Python,
against real `taskyard` processes on the real Docker engine (tests/e2e/harness.py's `Server`).

Like the end-to-end tests they never skip: without the engine, the runner image or Chromium
they fail and name the fix (Playwright comes with the `test` extras). Screenshots go to
`$TASKYARD_ARTIFACTS` (default /tmp/taskyard-artifacts); their paths are printed in the test
log and listed at the end of the run, so CI can keep them as artefacts.
"""

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))

from dashboard import OUTPUT_LIMIT, SCREENSHOTS, screenshot
from harness import Client, Server, require_engine, served
from playwright.sync_api import Browser, Page, sync_playwright

HERE = Path(__file__).parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.docker)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    # Let the `page` fixture see whether the test failed, to keep a screenshot of it.
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if SCREENSHOTS:
        terminalreporter.section("dashboard screenshots")
        for path in SCREENSHOTS:
            terminalreporter.write_line(f"screenshot: {path}")


@pytest.fixture(scope="session")
def engine() -> docker.DockerClient:
    return require_engine()


@pytest.fixture(scope="session")
def server(
    engine: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    # A small output cap, so that a test can see the page mark truncated output.
    dashboard = Server(
        tmp_path_factory.mktemp("dashboard"), env={"TASKYARD_OUTPUT_LIMIT_BYTES": str(OUTPUT_LIMIT)}
    )
    with served(engine, dashboard) as running:
        yield running


@pytest.fixture
def own_server(engine: docker.DockerClient, fresh_dir: Path) -> Iterator[Server]:
    """A server of the test's own, for a test that creates user tokens: they end open mode."""
    with served(engine, Server(fresh_dir)) as running:
        yield running


@pytest.fixture(scope="session")
def client(server: Server) -> Client:
    return Client(server.url)


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"{CHROMIUM} is missing: run deploy/setup-host.sh "
            "(it installs Debian's chromium package)"
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        yield launched
        launched.close()


def new_page(
    browser: Browser, request: pytest.FixtureRequest, viewport: dict[str, int]
) -> Iterator[Page]:
    context = browser.new_context(viewport=viewport)
    context.set_default_timeout(10_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    # The page's Content-Security-Policy allows only its own origin: anything it blocks is
    # a part of the page that no longer works.
    page.on(
        "console",
        lambda message: (
            errors.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    yield page
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        screenshot(page, f"{request.node.name}-failure")
    context.close()
    assert not errors, f"uncaught JavaScript errors or blocked content on the page: {errors}"


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    yield from new_page(browser, request, DESKTOP)


@pytest.fixture
def phone(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    yield from new_page(browser, request, PHONE)


@pytest.fixture
def fresh_dir(tmp_path: Path) -> Path:
    return tmp_path / f"instance-{uuid.uuid4().hex[:8]}"
