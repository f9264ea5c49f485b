"""/docs, the API reference, renders in a browser that can reach nothing but this service."""

from harness import Server
from playwright.sync_api import Page, Route


def test_the_api_reference_renders_with_everything_else_blocked(page: Page, server: Server) -> None:
    elsewhere: list[str] = []

    def only_this_service(route: Route) -> None:
        if route.request.url.startswith(server.url + "/"):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    page.route("**/*", only_this_service)
    page.goto(f"{server.url}/docs")

    page.locator(".opblock-summary-path", has_text="/tasks/{task_id}").first.wait_for()
    assert "taskyard" in page.locator(".info .title").inner_text()
    assert elsewhere == []
