"""A task's phase is one of the seven: a CHECK constraint on tasks.phase.

Revision ID: 0009
Revises: 0008
Create Date: the phase as a closed set (issue #15)
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from models.migrations import SchemaError

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As `models.tables.PHASE_CHECK` says it today; written out, since a revision must not change
# when the models do.
PHASES = ("Pending", "Scheduled", "Running", "Succeeded", "Failed", "TimedOut", "Cancelled")
CONDITION = "phase IN ({})".format(", ".join(f"'{phase}'" for phase in PHASES))


def upgrade() -> None:
    # Only a hand-edited database holds another phase: say which tasks, rather than let the
    # copy below fail on the first of them. Nothing has changed yet; the upgrade stops.
    others = op.get_bind().execute(
        sa.text(f"SELECT id, phase FROM tasks WHERE NOT ({CONDITION}) ORDER BY pk LIMIT 5")
    )
    found = ", ".join(f"{task_id} ({phase!r})" for task_id, phase in others)
    if found:
        raise SchemaError(
            f"tasks with a phase that is none of {', '.join(PHASES)}: {found}; correct or "
            "delete them, then start again"
        )
    # SQLite cannot add a constraint to a table in place: batch mode copies the table, its rows
    # and indexes.
    with op.batch_alter_table("tasks") as batch:
        batch.create_check_constraint("ck_tasks_phase", CONDITION)


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.drop_constraint("ck_tasks_phase", type_="check")
