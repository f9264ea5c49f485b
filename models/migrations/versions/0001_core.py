"""Core: tasks, their transitions and the host's capacity row.

Revision ID: 0001
Revises:
Create Date: the schema of commit cc288f4, the first release

Written by hand to match what `SQLModel.metadata.create_all` made at that commit. On PostgreSQL
(which came later, with no database of its own to match) keys, seqs and byte counts are BIGINT:
a 4 GB task would not fit Postgres' INTEGER, which SQLite's 64-bit one holds; and text that
may hold NUL is BYTEA.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# INTEGER on SQLite (64 bits there), BIGINT (BIGSERIAL for a key) on PostgreSQL.
BIG = sa.Integer().with_variant(sa.BigInteger(), "postgresql")
# Text that may hold NUL (stdin, what a program prints): PostgreSQL's TEXT cannot, so there it
# is BYTEA holding the UTF-8 (models.tables.AnyText).
ANY_TEXT = sa.Text().with_variant(sa.LargeBinary(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "tasks",
        sa.Column("pk", BIG, nullable=False),
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("resource_version", sa.Integer(), nullable=False),
        sa.Column("task_type", sa.String(), nullable=False),
        sa.Column("code", sa.Text(), nullable=False),
        sa.Column("cpu", sa.Integer(), nullable=False),
        sa.Column("gpu", sa.Integer(), nullable=False),
        sa.Column("ram", sa.String(), nullable=False),
        sa.Column("ram_bytes", BIG, nullable=False),
        sa.Column("storage", sa.String(), nullable=False),
        sa.Column("storage_bytes", BIG, nullable=False),
        sa.Column("timeout_seconds", sa.Integer(), nullable=False),
        sa.Column("stdin", ANY_TEXT, nullable=True),
        sa.Column("cancel_requested_at", sa.DateTime(), nullable=True),
        sa.Column("phase", sa.String(), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("message", sa.String(), nullable=False),
        sa.Column("result", ANY_TEXT, nullable=True),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("stdout", ANY_TEXT, nullable=True),
        sa.Column("stderr", ANY_TEXT, nullable=True),
        sa.Column("stdout_truncated", sa.Boolean(), nullable=False),
        sa.Column("stderr_truncated", sa.Boolean(), nullable=False),
        sa.Column("assigned_cpus", sa.JSON(), nullable=False),
        sa.Column("assigned_gpus", sa.JSON(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("scheduled_at", sa.DateTime(), nullable=True),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("deadline_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("pk"),
    )
    op.create_index("ix_tasks_phase_pk", "tasks", ["phase", "pk"])
    op.create_index("ix_tasks_id", "tasks", ["id"], unique=True)

    op.create_table(
        "transitions",
        sa.Column("seq", BIG, nullable=False),
        sa.Column("task_id", sa.String(), nullable=False),
        sa.Column("from_phase", sa.String(), nullable=True),
        sa.Column("to_phase", sa.String(), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("message", sa.String(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("resource_version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_index("ix_transitions_task_id", "transitions", ["task_id"])

    op.create_table(
        "capacity",
        sa.Column("node", sa.String(), nullable=False),
        sa.Column("cpus_total", sa.Integer(), nullable=False),
        sa.Column("cpu_ids", sa.JSON(), nullable=False),
        sa.Column("ram_total", BIG, nullable=False),
        sa.Column("ram_allocatable", BIG, nullable=False),
        sa.Column("storage_total", BIG, nullable=False),
        sa.Column("storage_allocatable", BIG, nullable=False),
        sa.Column("gpu_ids", sa.JSON(), nullable=False),
        sa.Column("gpu_names", sa.JSON(), nullable=False),
        sa.Column("gpu_sharing", sa.Integer(), nullable=False),
        sa.Column("allocated_cpus", sa.JSON(), nullable=False),
        sa.Column("allocated_gpus", sa.JSON(), nullable=False),
        sa.Column("allocated_ram", BIG, nullable=False),
        sa.Column("allocated_storage", BIG, nullable=False),
        sa.Column("runtime_ok", sa.Boolean(), nullable=False),
        sa.Column("runtime_message", sa.String(), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("node"),
    )


def downgrade() -> None:
    op.drop_table("capacity")
    op.drop_index("ix_transitions_task_id", table_name="transitions")
    op.drop_table("transitions")
    op.drop_index("ix_tasks_id", table_name="tasks")
    op.drop_index("ix_tasks_phase_pk", table_name="tasks")
    op.drop_table("tasks")
