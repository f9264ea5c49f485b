"""Schema migrations: the Alembic revisions under versions/, and how a database gets to head.

`models.database.open_database` calls `migrate()` on every start of the API and of the
controller, inside one write transaction (`BEGIN IMMEDIATE`). When both start at once, one of
them migrates and the other, let in after its commit, finds the database at head.

Three kinds of database arrive here:
- a new, empty one: every revision runs;
- a versioned one (it has an `alembic_version` table): the revisions after its own run;
- one made by `create_all`, before taskyard had migrations: its tables are compared with the
  schema of each revision. The revision it matches is stamped, then the later ones run. A
  database that matches none is left alone, with a `SchemaError` saying how it differs.

Alembic is configured here in code; no alembic.ini is read at run time.
"""

import logging
import threading
from functools import cache
from pathlib import Path

import sqlalchemy as sa

# Alembic's own INFO lines (plugins set up on import, "non-transactional DDL") are noise at every
# start; migrate() logs each revision it runs instead. A logging setup that names the "alembic"
# logger still wins.
if logging.getLogger("alembic").level == logging.NOTSET:
    logging.getLogger("alembic").setLevel(logging.WARNING)

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError

log = logging.getLogger(__name__)

VERSION_TABLE = "alembic_version"

# Alembic's `op` and `context` are process-wide proxies: one migration at a time per process.
_alembic_lock = threading.RLock()

# A table's shape: its columns, primary key, indexes and constraints (CHECK ones too), one
# comparable line each.
Shape = dict[str, frozenset[str]]


class SchemaError(RuntimeError):
    """The database's schema is not one this version of taskyard can bring to head."""


def alembic_config(connection: sa.Connection | None = None) -> Config:
    """Alembic's configuration, pointed at this package; `connection` is the one to migrate."""
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    head = _scripts().get_current_head()
    if head is None:
        raise SchemaError("no schema revisions are installed")
    return head


def current_revision(connection: sa.Connection) -> str | None:
    """The revision stamped in the database; None when it has no `alembic_version` table."""
    return MigrationContext.configure(connection).get_current_revision()


def migrate(connection: sa.Connection) -> None:
    """Bring the database on `connection`, inside a write transaction, to head."""
    with _alembic_lock:
        _migrate(connection)


def _migrate(connection: sa.Connection) -> None:
    revision = current_revision(connection)
    if revision is None and table_shapes(connection):
        revision = _legacy_revision(connection)
        log.info(
            "database schema: no revision recorded, the tables match %s; stamping it", revision
        )
        command.stamp(alembic_config(connection), revision)
    head = head_revision()
    if revision == head:
        return
    if revision is None:
        log.info("database schema: a new database, creating revision %s", head)
    else:
        check_known(revision)
        log.info("database schema: upgrading from %s to %s", revision, head)
        for script in reversed(list(_scripts().iterate_revisions(head, revision))):
            log.info("database schema: %s %s", script.revision, script.doc)
    command.upgrade(alembic_config(connection), "head")


def check_known(revision: str) -> None:
    """`SchemaError` for a revision that this version of taskyard cannot upgrade from."""
    try:
        _scripts().get_revision(revision)
    except CommandError:
        raise SchemaError(
            f"the database is at schema revision {revision!r}, which this version of taskyard "
            f"does not know (its newest is {head_revision()!r}); was it upgraded by a newer "
            "taskyard?"
        ) from None


def table_shapes(connection: sa.Connection) -> Shape:
    """Every table but Alembic's own, as the database itself describes it."""
    inspector = sa.inspect(connection)
    shapes: Shape = {}
    for table in inspector.get_table_names():
        if table == VERSION_TABLE:
            continue
        lines = {
            f"column {c['name']} {c['type']} {'NULL' if c['nullable'] else 'NOT NULL'}"
            + (f" DEFAULT {c['default']}" if c.get("default") is not None else "")
            for c in inspector.get_columns(table)
        }
        primary_key = inspector.get_pk_constraint(table)["constrained_columns"]
        lines.add(f"primary key ({', '.join(primary_key)})")
        lines |= {
            f"{'unique ' if index['unique'] else ''}index {index['name']} "
            f"({', '.join(str(column) for column in index['column_names'])})"
            for index in inspector.get_indexes(table)
        }
        lines |= {
            f"unique constraint ({', '.join(unique['column_names'])})"
            for unique in inspector.get_unique_constraints(table)
        }
        lines |= {
            f"foreign key ({', '.join(fk['constrained_columns'])}) -> {fk['referred_table']}"
            for fk in inspector.get_foreign_keys(table)
        }
        lines |= {
            f"check {check['name']} ({check['sqltext']})"
            for check in inspector.get_check_constraints(table)
        }
        shapes[table] = frozenset(lines)
    return shapes


@cache
def revision_shapes() -> tuple[tuple[str, Shape], ...]:
    """The tables each revision leaves, newest first, found by running them on a scratch
    in-memory database."""
    shapes = []
    engine = sa.create_engine("sqlite://")
    with _alembic_lock, engine.begin() as connection:
        for script in reversed(list(_scripts().walk_revisions())):
            command.upgrade(alembic_config(connection), script.revision)
            shapes.append((script.revision, table_shapes(connection)))
    engine.dispose()
    return tuple(reversed(shapes))


def _legacy_revision(connection: sa.Connection) -> str:
    found = table_shapes(connection)
    for revision, shape in revision_shapes():
        if shape == found:
            return revision
    head, expected = revision_shapes()[0]
    raise SchemaError(
        "the database has tables but no schema revision, and they match no revision of "
        f"taskyard's schema. Compared with the newest ({head}): "
        + "; ".join(shape_differences(expected, found))
    )


def shape_differences(expected: Shape, found: Shape) -> list[str]:
    """What `found` lacks and adds compared with `expected`, one phrase per table."""
    differences = [f"table {table} is missing" for table in sorted(expected.keys() - found)]
    differences += [f"table {table} is not taskyard's" for table in sorted(found.keys() - expected)]
    for table in sorted(expected.keys() & found.keys()):
        missing = sorted(expected[table] - found[table])
        extra = sorted(found[table] - expected[table])
        if missing:
            differences.append(f"{table} lacks {', '.join(missing)}")
        if extra:
            differences.append(f"{table} has {', '.join(extra)} besides")
    return differences
