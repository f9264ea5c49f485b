"""Runtimes, files in and out, and usage: what a task brings beside its code and what its run
cost (issue #16), and the runtimes each host holds.

Revision ID: 0007
Revises: 0006
Create Date: runtimes, files and usage (issue #16)
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Existing tasks ran the only runtime there was, with nothing beside their code.
# (A boolean's default is `false()`: SQLite writes 0, and PostgreSQL refuses 0 for a boolean.)
NEW_TASK_COLUMNS: tuple[tuple[str, Any, Any], ...] = (
    ("runtime", sa.String(), sa.text("'python'")),
    ("files", sa.JSON(), sa.text("'[]'")),
    ("args", sa.JSON(), sa.text("'[]'")),
    ("env", sa.JSON(), sa.text("'{}'")),
    ("collect", sa.JSON(), sa.text("'[]'")),
    ("collected_files", sa.JSON(), sa.text("'[]'")),
    ("files_truncated", sa.Boolean(), sa.false()),
)


def upgrade() -> None:
    for name, kind, default in NEW_TASK_COLUMNS:
        op.add_column("tasks", sa.Column(name, kind, nullable=False, server_default=default))
    op.add_column("tasks", sa.Column("usage", sa.JSON(), nullable=True))
    op.add_column(
        "capacity",
        sa.Column("runtimes", sa.JSON(), nullable=False, server_default=sa.text("'{}'")),
    )
    # The server defaults go again once filled in (SQLite: by copying the table), as in 0004.
    with op.batch_alter_table("tasks") as batch:
        for name, _, _ in NEW_TASK_COLUMNS:
            batch.alter_column(name, server_default=None)
    with op.batch_alter_table("capacity") as batch:
        batch.alter_column("runtimes", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("capacity") as batch:
        batch.drop_column("runtimes")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("usage")
        for name, _, _ in reversed(NEW_TASK_COLUMNS):
            batch.drop_column(name)
