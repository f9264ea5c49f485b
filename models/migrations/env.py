"""Alembic's entry point for the revisions under versions/.

`models.migrations` runs it with the open, write-locked connection in
`config.attributes["connection"]`. Developers run it through the `alembic` command and the
repository's alembic.ini, which names a scratch database (see README, "Schema migrations").
"""

from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection, create_engine
from sqlmodel import SQLModel

from models import tables  # noqa: F401  (registers the tables on SQLModel.metadata)


def run_on(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=SQLModel.metadata,
        # SQLite cannot alter a column in place: autogenerate writes batch operations, which
        # copy the table.
        render_as_batch=True,
        compare_type=True,
        compare_server_default=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run() -> None:
    config = context.config
    connection = config.attributes.get("connection")
    if connection is not None:
        run_on(connection)
        return
    if context.is_offline_mode():
        # Batch operations read the table they copy from the database.
        raise SystemExit("taskyard's revisions need a live database: run alembic without --sql")
    if config.config_file_name is not None:
        fileConfig(config.config_file_name)
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "sqlite://")
    with engine.connect() as connection:
        run_on(connection)
    engine.dispose()


run()
