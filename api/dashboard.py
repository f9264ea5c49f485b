"""The dashboard: `/` serves one static page (api/static/index.html) that talks only to the
public REST API and /watch. Its assets are files in the package; nothing comes from a CDN.

The page and its files go out with a Content-Security-Policy that allows only this origin
(task data is shown as text, and this keeps it so should a bug ever insert it as markup), and
may not be framed by any page.
"""

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles as _StaticFiles
from starlette.responses import Response
from starlette.types import Scope

STATIC_DIR = Path(__file__).parent / "static"
# `data:` images only for the page's empty favicon (`<link rel="icon" href="data:,">`).
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

router = APIRouter()


@router.get("/", include_in_schema=False)
def index() -> FileResponse:
    """The dashboard page."""
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers=HEADERS)


class StaticFiles(_StaticFiles):
    """The dashboard's files, with the page's security headers."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(HEADERS)
        return response
