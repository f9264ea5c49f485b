"""Builds the FastAPI application over a settings object and an open database."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api import (
    admin,
    attach,
    batches,
    dashboard,
    docs,
    health,
    logs,
    metrics,
    runtimes,
    tasks,
    tokens,
    watch,
)
from api.access_log import AccessLog
from api.admission import HostLimitsCache
from api.auth import ActiveTokens
from api.errors import install_error_handlers
from api.fast_submit import FastSubmitRoute
from api.guard import RequestGuard
from api.streams import StreamRegistry
from api.submissions import SubmissionWriter
from api.watch import TransitionFeed
from models.admin_token import ensure_admin_token
from models.database import Database
from models.settings import Settings


def max_body_bytes(settings: Settings) -> int:
    """The largest body a valid request can have: the code and stdin as JSON escapes may write
    them (six bytes a character), the files in base64 and escapes, and room for the rest."""
    return 12 * settings.max_code_bytes + 2 * settings.max_files_bytes + 64 * 1024


def create_app(settings: Settings, database: Database) -> FastAPI:
    feed = TransitionFeed(database, settings.watch_poll_seconds, settings.watch_heartbeat_seconds)
    submissions = SubmissionWriter(database, settings)
    active_tokens = ActiveTokens()
    streams = StreamRegistry(database, settings, active_tokens)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await feed.start()
        await streams.start()
        try:
            yield
        finally:
            await streams.stop()
            await feed.stop()
            submissions.close()

    app = FastAPI(
        title="taskyard",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,  # api.docs serves /docs with its files; /redoc would need a CDN
        redoc_url=None,
        description=(
            "Run code snippets in hardened containers on a shared host.\n\n"
            'Every 4xx and 503 answer is JSON `{"detail": ...}`: a sentence, or a list of '
            "`{loc, msg, type}`. A request body must be sent as `application/json` (415 "
            "otherwise). Query parameters a route does not know are ignored. A 503 (storage "
            "full or locked) comes with `Retry-After`: nothing was stored; send it again.\n\n"
            "On every route: a body over the limit is 413 as it arrives; `Content-Length` "
            "with `Transfer-Encoding` is 400; a request with a body and a token that would be "
            "refused is 401 (403 on /admin) before the body is read. In open mode (no active user "
            "token yet) a `Host` that is not a loopback name or in TASKYARD_ALLOWED_HOSTS is "
            "400, and an `Origin` from elsewhere is 403."
        ),
    )
    app.state.settings = settings
    app.state.database = database
    app.state.feed = feed
    app.state.submissions = submissions
    app.state.host_limits = HostLimitsCache(database)
    app.state.active_tokens = active_tokens
    app.state.streams = streams
    app.state.admin_token, app.state.admin_token_path = ensure_admin_token(settings)
    install_error_handlers(app)
    app.router.routes.append(FastSubmitRoute())  # before the route it hands the rest to
    app.include_router(tasks.router)
    app.include_router(batches.router)
    app.include_router(watch.router)
    app.include_router(logs.router)
    app.include_router(attach.router)
    app.include_router(admin.router)
    app.include_router(admin.public_router)
    app.include_router(runtimes.router)
    app.include_router(tokens.router)
    app.include_router(dashboard.router)
    app.mount("/static", dashboard.StaticFiles(directory=dashboard.STATIC_DIR), name="static")
    app.include_router(docs.router)
    app.mount(docs.ASSETS_URL, docs.assets(), name="docs-assets")
    app.include_router(health.router)
    app.include_router(metrics.router)
    # JSON escapes can take six characters per byte of code or stdin.
    app.add_middleware(
        RequestGuard,
        settings=settings,
        database=database,
        tokens=app.state.active_tokens,
        admin_token=app.state.admin_token,
        max_body_bytes=max_body_bytes(settings),
    )
    if settings.access_log:
        app.add_middleware(AccessLog)  # added last: outermost, so it sees the guard's refusals
    return app
