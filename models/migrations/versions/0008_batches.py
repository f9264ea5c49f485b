"""Batches: the batch a task was submitted in (POST /batches), indexed to list, count and
cancel a batch's tasks (issue #17).

Revision ID: 0008
Revises: 0007
Create Date: batch submission (issue #17)
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Tasks stored before were each submitted alone: no batch.
    op.add_column("tasks", sa.Column("batch_id", sa.String(), nullable=True))
    op.create_index("ix_tasks_batch_pk", "tasks", ["batch_id", "pk"])


def downgrade() -> None:
    op.drop_index("ix_tasks_batch_pk", "tasks")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("batch_id")
