"""Schemathesis against the app's own OpenAPI document, in-process (ASGI), with every check on.

Each operation is fuzzed as the admin and as a plain user (a user token exists, so the service
is out of open mode and every task endpoint needs a token; schemathesis's `ignored_auth` check
also sends each request without one). Then the stateful test follows the document's links from
`POST /tasks` to reading, cancelling, listing the events and output of, and resetting the task
it created. No controller runs: the API alone, over a real SQLite file, with a capacity row as
a controller would have written it.

What must hold: no 5xx, every status code documented, every body and header as documented.

Two documented limits of what the document can say, and so of the `positive_data_acceptance`
check: a request that has the documented shape may still be refused by a rule that depends on
the settings or on the host (a RAM size below the engine's minimum, more CPUs than the host
has, code over the byte limit, a user's quota), so `POST /tasks` and `POST /batches` may
answer 413, 422 and 429 to schema-valid data. Server-Sent Events streams never end by
themselves while no task ends: /watch is read for half a second, and logs are read without
following. And one check does not apply: DELETE cancels a task rather than removing it (see
`_schema`).
"""

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig
from schemathesis.python.asgi import shutdown_lifespans

from api.app import create_app
from models.clock import utcnow
from models.database import open_database
from models.quantities import GIB
from models.settings import Settings
from models.tables import ApiToken, Capacity
from models.tokens import hash_token

ADMIN_TOKEN = "fuzz-admin-token"
USER_TOKEN = "ty_fuzz-user-token"
FUZZ_SETTINGS = settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))

_data_dir = tempfile.TemporaryDirectory(prefix="taskyard-fuzz-")
_database = open_database(f"sqlite:///{_data_dir.name}/taskyard.db")
with _database.write() as _session:
    _session.add(ApiToken(id="u-fuzz", name="fuzz", token_hash=hash_token(USER_TOKEN)))
    _session.add(
        Capacity(
            node="local",
            cpus_total=4,
            cpu_ids=[0, 1, 2, 3],
            ram_total=16 * GIB,
            ram_allocatable=8 * GIB,
            storage_total=100 * GIB,
            storage_allocatable=50 * GIB,
            runtime_ok=True,
            runtime_message="fake engine",
            heartbeat_at=utcnow(),
        )
    )
    _session.commit()
# No quota: the user's fuzzed tasks pile up, and test_tenancy_api.py covers the 429.
APP = create_app(
    Settings(
        data_dir=Path(_data_dir.name),
        admin_token=ADMIN_TOKEN,
        user_max_active_tasks=0,
        watch_heartbeat_seconds=0.1,
    ),
    _database,
)


def _schema(token: str) -> Any:
    """The app's document, loaded for one caller: every request carries its token (as a
    configured header, so schemathesis does not also generate a malformed one)."""
    headers = {"Authorization": f"Bearer {token}"}
    config = SchemathesisConfig.from_dict(
        {
            "base-url": "http://testserver",
            "request-timeout": 10,
            "headers": headers,
            # By contract DELETE /tasks/{id} requests a cancellation (202) and the task stays
            # readable, as a Kubernetes delete with finalizers does; a revoked token stays listed.
            # Neither is a use after free.
            "checks": {"use_after_free": {"enabled": False}},
            "operations": [
                {
                    "include-name": name,
                    "checks": {
                        "positive_data_acceptance": {
                            "expected-statuses": ["2xx", "401", "404", "409", "413", "422", "429"]
                        }
                    },
                }
                for name in ("POST /tasks", "POST /batches")
            ],
        }
    )
    loaded = schemathesis.openapi.from_dict(APP.openapi(), config=config)
    loaded.app = APP
    return loaded


AS_ADMIN = _schema(ADMIN_TOKEN)
AS_USER = _schema(USER_TOKEN)


@pytest.fixture(scope="module", autouse=True)
def _service() -> Iterator[None]:
    yield
    shutdown_lifespans()  # the app's lifespan, started by schemathesis's first call
    _database.dispose()
    _data_dir.cleanup()


def _call_options(case: Any) -> dict[str, Any]:
    """The caller's token, passed again to the call so that schemathesis's auth checks know it
    was given, not generated; and /watch, which streams until the client goes away, is read
    for half a second."""
    options: dict[str, Any] = {"headers": dict(case.operation.schema.config.headers)}
    if case.operation.path == "/watch":
        options["timeout"] = 0.5
    return options


def _shorten(case: Any) -> None:
    """No controller runs, so no task ever ends: a valid `?wait=N` would hold its request for
    N seconds, and `?follow=true` for ever. Keep the wait, but at 0.05 s, and read the logs
    without following (following is covered in test_logs_api.py). Invalid values are left as
    generated, to be refused."""
    query = case.query or {}
    wait = query.get("wait")
    if isinstance(wait, int | float) and not isinstance(wait, bool) and 0.05 < wait <= 60:
        query["wait"] = 0.05
    if query.get("follow") in (True, "true", "True", "1", 1, "on", "yes"):
        query["follow"] = False


@schemathesis.pytest.parametrize(admin=AS_ADMIN, user=AS_USER)
@FUZZ_SETTINGS
def test_every_operation_answers_as_documented(case: Any) -> None:
    _shorten(case)
    case.call_and_validate(**_call_options(case))


def _sequences(schema: Any) -> Any:
    class Sequences(schema.as_state_machine()):  # type: ignore[misc]
        """Sequences along the document's links. Their point is what happens to a task
        that exists, so each valid new task asks for what the host has (request bodies are
        fuzzed above); an invalid one is sent as generated."""

        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return _call_options(case)

        def before_call(self, case: Any) -> None:
            _shorten(case)
            if (
                case.operation.label == "POST /tasks"
                and isinstance(case.body, dict)
                and case.meta is not None
                and case.meta.generation.mode.is_positive
            ):
                case.body["resources"] = {"cpu": "1", "gpu": "0", "ram": "64MB", "storage": "100MB"}
                case.body["timeout_seconds"] = 30

    return Sequences


@pytest.mark.parametrize("schema", [AS_ADMIN, AS_USER], ids=["admin", "user"])
def test_linked_sequences_answer_as_documented(schema: Any) -> None:
    _sequences(schema).run(
        settings=settings(
            max_examples=10,
            stateful_step_count=6,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
    )


def test_the_document_declares_the_error_answers() -> None:
    document = APP.openapi()
    post = document["paths"]["/tasks"]["post"]
    assert set(post["responses"]) >= {"201", "401", "413", "415", "422", "429", "503"}
    assert post["responses"]["503"]["headers"]["Retry-After"]["required"] is True
    assert set(post["responses"]["201"]["links"]) >= {"GetTask", "CancelTask"}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            assert "503" in operation["responses"], f"{method.upper()} {path}"
            for code, answer in operation["responses"].items():
                if code.startswith(("4", "5")):
                    assert answer["content"]["application/json"]["schema"] == {
                        "$ref": "#/components/schemas/ErrorBody"
                    }, f"{method} {path} {code}"
