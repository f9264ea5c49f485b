"""Signing in: a service that needs a token shows a sign-in view, not "offline"; a pasted token
is tried before it is kept, sent as a header and never in a URL; open mode ends while the page
is open, and comes back when the last user token is revoked."""

import httpx
from dashboard import TASK_SECONDS, admin_token, bearer, row, screenshot
from harness import Server, task_body
from playwright.sync_api import Page, Request, expect

# How long the page may take to notice that open mode came back: it asks again every 5 s.
SIGN_IN_RETRY = 8_000


def create_token(server: Server, name: str) -> dict[str, str]:
    response = httpx.post(
        f"{server.url}/admin/tokens",
        json={"name": name},
        headers=bearer(admin_token(server.data_dir)),
    )
    assert response.status_code == 201, response.text
    token: dict[str, str] = response.json()
    return token


def revoke_token(server: Server, token_id: str) -> None:
    response = httpx.delete(
        f"{server.url}/admin/tokens/{token_id}", headers=bearer(admin_token(server.data_dir))
    )
    assert response.status_code == 200, response.text


def expect_sign_in(page: Page) -> None:
    expect(page.locator("#connection")).to_have_attribute("data-state", "signin")
    expect(page.locator("#connection-text")).to_have_text("sign in required")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.locator("#view-tasks")).to_be_hidden()


def sign_in(page: Page, token: str) -> None:
    page.fill("#signin-token", token)
    page.get_by_role("button", name="Sign in", exact=True).click()


def test_a_service_that_needs_a_token_asks_for_one_and_shows_the_tasks_after_sign_in(
    page: Page, own_server: Server
) -> None:
    alice = create_token(own_server, "alice")
    task = httpx.post(
        f"{own_server.url}/tasks?wait=30",
        json=task_body("print('mine')"),
        headers=bearer(alice["token"]),
    ).json()
    requests: list[Request] = []
    page.on("request", lambda request: requests.append(request))

    page.goto(f"{own_server.url}/#/")
    expect_sign_in(page)
    expect(page.get_by_text("offline")).to_have_count(0)
    screenshot(page, "sign-in-required")

    sign_in(page, "ty_not-a-token")
    error = page.locator("#signin-error")
    expect(error).to_contain_text("This token was refused (HTTP 401)")
    expect(error).to_contain_text("unknown or revoked")
    assert page.evaluate("sessionStorage.length") == 0
    expect_sign_in(page)

    sign_in(page, alice["token"])
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    expect(row(page, task["id"]).locator(".phase")).to_have_text("Succeeded", timeout=TASK_SECONDS)
    expect(page.locator("#account-text")).to_have_text("Signed in with a user token")
    expect(page.locator("#signin-error")).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('taskyard.token')") == alice["token"]
    assert page.evaluate("localStorage.length") == 0
    assert page.evaluate("document.cookie") == ""
    screenshot(page, "sign-in-tasks")

    # Every request after the sign-in carried the token as a header, the event stream too,
    # and none carried it in its URL.
    assert not [r.url for r in requests if alice["token"] in r.url]
    watches = [r for r in requests if r.url.endswith("/watch")]
    assert watches and watches[-1].headers.get("authorization") == f"Bearer {alice['token']}"

    page.get_by_role("button", name="Sign out").click()
    expect_sign_in(page)
    assert page.evaluate("sessionStorage.length") == 0


def test_open_mode_ends_while_the_page_is_open_and_comes_back_when_the_token_is_revoked(
    page: Page, own_server: Server
) -> None:
    done = httpx.post(f"{own_server.url}/tasks?wait=30", json=task_body("print(1)")).json()
    page.goto(f"{own_server.url}/#/")
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    expect(row(page, done["id"])).to_be_visible()

    token = create_token(own_server, "first")
    # The server ends the open-mode stream; the page's next try is refused.
    expect_sign_in(page)
    screenshot(page, "closed-mode")

    revoke_token(own_server, token["id"])
    expect(page.locator("#connection")).to_have_attribute(
        "data-state", "live", timeout=SIGN_IN_RETRY
    )
    expect(page.locator("#view-signin")).to_be_hidden()
    expect(row(page, done["id"])).to_be_visible()
    expect(page.locator("#account")).to_be_hidden()


def test_a_revoked_token_signs_the_tab_out_and_says_why(page: Page, own_server: Server) -> None:
    alice, bob = create_token(own_server, "alice"), create_token(own_server, "bob")
    page.goto(f"{own_server.url}/#/")
    sign_in(page, alice["token"])
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")

    revoke_token(own_server, alice["id"])  # bob's token keeps the service closed
    expect_sign_in(page)
    expect(page.locator("#signin-message")).to_contain_text("Your token was refused")
    assert page.evaluate("sessionStorage.length") == 0
    sign_in(page, bob["token"])
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")
