"""GET /docs, the API reference page, works on a host without internet: everything the page
loads comes from this service, and answers."""

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from models.database import open_database
from models.settings import Settings

# Every URL the page's markup or its inline script names (src=, href=, url:).
_URL = re.compile(r"""(?:\b(?:src|href)\s*=\s*|\burl\s*:\s*)["']([^"']+)["']""")


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    database = open_database("sqlite:///" + str(tmp_path / "t.db"))
    app = create_app(Settings(data_dir=tmp_path), database)
    with TestClient(app, base_url="http://127.0.0.1") as test_client:
        yield test_client
    database.dispose()


def test_the_docs_page_loads_only_what_this_service_serves(client: TestClient) -> None:
    page = client.get("/docs")

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    urls = _URL.findall(page.text)
    assert any(url.endswith(".js") for url in urls) and any(url.endswith(".css") for url in urls)
    assert "/openapi.json" in urls
    for url in urls:
        parts = urlsplit(url)
        assert not parts.scheme and not parts.netloc and url.startswith("/"), url
        answer = client.get(url)
        assert answer.status_code == 200, url
        assert answer.content, url
    assert "http://" not in page.text and "https://" not in page.text


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("swagger-ui-bundle.js", "javascript"),
        ("swagger-ui.css", "text/css"),
    ],
)
def test_its_script_and_styles_are_served_as_what_they_are(
    client: TestClient, name: str, kind: str
) -> None:
    answer = client.get(f"/docs/assets/{name}")

    assert answer.status_code == 200
    assert kind in answer.headers["content-type"]
    assert len(answer.content) > 10_000


def test_redoc_is_off_rather_than_loading_from_a_cdn(client: TestClient) -> None:
    assert client.get("/redoc").status_code == 404
