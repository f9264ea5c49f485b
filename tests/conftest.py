"""The store every API and controller test runs against: `database_url` is a fresh SQLite file
for one run of the test and a fresh PostgreSQL database for the other.

The PostgreSQL server is a real one (`scratch_postgres`), started once per test session in a
temporary directory; each test gets a new database copied from a template that already has the
migrations applied (a copy takes about 0.05 s; migrating takes 0.2 s).
`TASKYARD_TEST_STORES=sqlite` (or `postgres`) runs one store only, outside CI. Where PostgreSQL
cannot be started its tests skip, saying why, except in CI (CI=true), where they fail.
"""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from scratch_postgres import Postgres, PostgresMissing, ScratchPostgres

from models.database import open_database

STORES = ("sqlite", "postgres")
IN_CI = os.environ.get("CI") == "true"


def _stores() -> tuple[str, ...]:
    chosen = os.environ.get("TASKYARD_TEST_STORES", "")
    if IN_CI or not chosen:
        return STORES
    wanted = tuple(store for store in STORES if store in chosen.split(","))
    if not wanted:
        raise pytest.UsageError(
            f"TASKYARD_TEST_STORES={chosen!r} names no store; the stores are {', '.join(STORES)}"
        )
    return wanted


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    server = ScratchPostgres()
    try:
        server.start()
    except PostgresMissing as exc:
        if IN_CI:
            pytest.fail(f"PostgreSQL is needed in CI: {exc}")
        pytest.skip(f"no PostgreSQL to test against: {exc}")
    try:
        template = server.create_database()
        open_database(server.url(template)).dispose()
    except BaseException:
        server.stop()
        raise
    postgres = Postgres(server, template)
    yield postgres
    postgres.stop()


@pytest.fixture(params=_stores())
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a new database (`open_database` brings it to head): SQLite, then
    PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 't.db'}"
        return
    postgres: Postgres = request.getfixturevalue("postgres")
    name, url = postgres.fresh_url()
    yield url
    postgres.discard(name)
