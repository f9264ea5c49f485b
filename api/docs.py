"""GET /docs: the OpenAPI document in Swagger UI, with its script, styles and icon served from
this service (the `swagger-ui-bundle-v2` package's files, under /docs/assets/), so that the page
works on a host without internet. FastAPI's own /docs and /redoc load theirs from a CDN; the
app turns both off and `create_app` mounts these instead.
"""

from fastapi import APIRouter
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

ASSETS_URL = "/docs/assets"

router = APIRouter()


@router.get("/docs", include_in_schema=False)
def swagger_ui() -> HTMLResponse:
    """The API reference page."""
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="taskyard API",
        swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS_URL}/favicon-32x32.png",
        # No badge from the online validator: nothing on the page may leave this host.
        swagger_ui_parameters={"validatorUrl": None},
    )


def assets() -> StaticFiles:
    return StaticFiles(directory=str(swagger_ui_path))
