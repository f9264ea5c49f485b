"""Admin reset requests, stuck reasons, the controller's stats, and the meta table.

Revision ID: 0002
Revises: 0001
Create Date: the schema of commit 2ef0e8b (watch, admin, metrics, history compaction)

Commit 5dd9a8d before it changed only a Python-side default (`attempt` counts from 1), no schema.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("tasks", sa.Column("reset_requested_to", sa.String(), nullable=True))
    op.add_column("tasks", sa.Column("reset_requested_at", sa.DateTime(), nullable=True))
    op.add_column("tasks", sa.Column("stuck_reason", sa.String(), nullable=True))
    op.add_column("tasks", sa.Column("stuck_since", sa.DateTime(), nullable=True))
    op.create_index("ix_tasks_reset_requested_to", "tasks", ["reset_requested_to"])

    # The existing row gets empty stats; the models give the default on the Python side only,
    # so the server default goes again (SQLite: by copying the one-row table).
    op.add_column(
        "capacity",
        sa.Column("stats", sa.JSON(), nullable=False, server_default=sa.text("'{}'")),
    )
    with op.batch_alter_table("capacity") as batch:
        batch.alter_column("stats", server_default=None)

    op.create_table(
        "meta",
        sa.Column("key", sa.String(), nullable=False),
        sa.Column(
            "value", sa.Integer().with_variant(sa.BigInteger(), "postgresql"), nullable=False
        ),
        sa.PrimaryKeyConstraint("key"),
    )


def downgrade() -> None:
    op.drop_table("meta")
    with op.batch_alter_table("capacity") as batch:
        batch.drop_column("stats")
    op.drop_index("ix_tasks_reset_requested_to", table_name="tasks")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("stuck_since")
        batch.drop_column("stuck_reason")
        batch.drop_column("reset_requested_at")
        batch.drop_column("reset_requested_to")
