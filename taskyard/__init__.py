"""taskyard: the `taskyard` command (`taskyard.cli`, which wires `api/` and `controller/`
together and runs them) and the Python client, `from taskyard import Client` (`taskyard.client`,
which needs httpx alone).
"""

from taskyard.client import (
    ApiError,
    AsyncClient,
    CannotConnect,
    Client,
    ClientError,
    Conflict,
    InvalidRequest,
    QuotaExceeded,
    ServerError,
    Task,
    TaskNotFound,
    Unauthorized,
    WaitTimeout,
)

__all__ = [
    "ApiError",
    "AsyncClient",
    "CannotConnect",
    "Client",
    "ClientError",
    "Conflict",
    "InvalidRequest",
    "QuotaExceeded",
    "ServerError",
    "Task",
    "TaskNotFound",
    "Unauthorized",
    "WaitTimeout",
]
