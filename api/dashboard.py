"""The dashboard: `/` serves one static page (api/static/index.html) that talks only to the
public REST API and /watch. Its assets are files in the package; nothing comes from a CDN.
"""

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

STATIC_DIR = Path(__file__).parent / "static"

router = APIRouter()


@router.get("/", include_in_schema=False)
def index() -> FileResponse:
    """The dashboard page."""
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html")
