"""taskyard's Python client: the REST API of `docs/client.md`, typed, over httpx alone.

    from taskyard import Client
    with Client() as client:
        task = client.run("print('hi')")
        print(task.status.stdout)

It imports nothing of the server (no FastAPI, SQLModel, Docker or NVML): only httpx and the
standard library, which the import-linter contract `client-stands-alone` keeps so.

Modules: `sync_client` (`Client`, which the CLI verbs use), `async_client` (`AsyncClient`),
`records` (what they return), `errors` (what they raise), `protocol` (what the two share,
without I/O: request bodies, answers, Server-Sent Events, reconnecting cursors).
"""

from taskyard.client.async_client import AsyncClient
from taskyard.client.errors import (
    ApiError,
    CannotConnect,
    ClientError,
    Conflict,
    HistoryGone,
    InvalidRequest,
    QuotaExceeded,
    ServerError,
    TaskNotFound,
    Unauthorized,
    WaitTimeout,
    render_detail,
)
from taskyard.client.protocol import (
    DEFAULT_RESOURCES,
    DEFAULT_SERVER,
    SERVER_ENV,
    TOKEN_ENV,
    SseEvent,
    parse_sse,
    server_url,
)
from taskyard.client.records import (
    TERMINAL_PHASES,
    Assigned,
    Batch,
    BatchCreated,
    LogEnd,
    OutputChunk,
    Page,
    Record,
    Resources,
    Stuck,
    Task,
    TaskSpec,
    TaskStatus,
    Transition,
)
from taskyard.client.sync_client import Client

__all__ = [
    "DEFAULT_RESOURCES",
    "DEFAULT_SERVER",
    "SERVER_ENV",
    "TERMINAL_PHASES",
    "TOKEN_ENV",
    "ApiError",
    "Assigned",
    "AsyncClient",
    "Batch",
    "BatchCreated",
    "CannotConnect",
    "Client",
    "ClientError",
    "Conflict",
    "HistoryGone",
    "InvalidRequest",
    "LogEnd",
    "OutputChunk",
    "Page",
    "QuotaExceeded",
    "Record",
    "Resources",
    "ServerError",
    "SseEvent",
    "Stuck",
    "Task",
    "TaskNotFound",
    "TaskSpec",
    "TaskStatus",
    "Transition",
    "Unauthorized",
    "WaitTimeout",
    "parse_sse",
    "render_detail",
    "server_url",
]
