"""Resources as the user wrote them: tasks.cpu_text and tasks.gpu_text.

Revision ID: 0006
Revises: 0005
Create Date: the round trip of a task's spec (issue #19)
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Tasks that exist kept only the counts: their canonical strings ("2") stand in for what
    # was written. Their ram and storage already hold valid sizes ("512MB", "1GB"). The server
    # defaults go again once filled in (SQLite: by copying the table), as in 0004.
    for name in ("cpu_text", "gpu_text"):
        op.add_column("tasks", sa.Column(name, sa.String(), nullable=False, server_default=""))
    op.execute("UPDATE tasks SET cpu_text = CAST(cpu AS TEXT), gpu_text = CAST(gpu AS TEXT)")
    with op.batch_alter_table("tasks") as batch:
        batch.alter_column("cpu_text", server_default=None)
        batch.alter_column("gpu_text", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("gpu_text")
        batch.drop_column("cpu_text")
