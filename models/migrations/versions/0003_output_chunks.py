"""Live output: the output_chunks table.

Revision ID: 0003
Revises: 0002
Create Date: the schema of commit 30980c9 (live output, GET /tasks/{id}/logs)
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "output_chunks",
        sa.Column("seq", sa.Integer().with_variant(sa.BigInteger(), "postgresql"), nullable=False),
        sa.Column("task_id", sa.String(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("stream", sa.String(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_index("ix_output_chunks_task_seq", "output_chunks", ["task_id", "seq"])


def downgrade() -> None:
    op.drop_index("ix_output_chunks_task_seq", table_name="output_chunks")
    op.drop_table("output_chunks")
