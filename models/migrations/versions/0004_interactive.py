"""Interactive tasks: tasks.interactive and the input_chunks table.

Revision ID: 0004
Revises: 0003
Create Date: the schema of commit 77834fe (WS /tasks/{id}/attach)
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Tasks that exist were submitted before attach existed: not interactive. The server
    # default fills them in, then goes again (SQLite: by copying the table), since the models
    # give the default on the Python side only.
    op.add_column(
        "tasks",
        sa.Column("interactive", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    with op.batch_alter_table("tasks") as batch:
        batch.alter_column("interactive", server_default=None)

    op.create_table(
        "input_chunks",
        sa.Column("seq", sa.Integer().with_variant(sa.BigInteger(), "postgresql"), nullable=False),
        sa.Column("task_id", sa.String(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("eof", sa.Boolean(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_index("ix_input_chunks_task_seq", "input_chunks", ["task_id", "seq"])


def downgrade() -> None:
    op.drop_index("ix_input_chunks_task_seq", table_name="input_chunks")
    op.drop_table("input_chunks")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("interactive")
