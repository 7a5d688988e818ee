"""Tool approvals: a run waiting for a person's decision is ``requires_action`` with the
Agents SDK's serialized run state in ``paused`` (and since when, ``paused_at``); each tool
call it waits on is a ``run_approval`` row, decided once.

Revision ID: 20261203_1700
Revises: 20261203_1600
Create Date: 2026-12-03 17:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261203_1700"
down_revision: str | None = "20261203_1600"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_STATUSES = "status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')"
NEW_STATUSES = (
    "status IN ('queued', 'running', 'requires_action', 'succeeded', 'failed', 'cancelled')"
)


def upgrade() -> None:
    op.drop_constraint(op.f("ck_run_status_known"), "run", type_="check")
    op.create_check_constraint(op.f("ck_run_status_known"), "run", NEW_STATUSES)
    op.add_column("run", sa.Column("paused", sa.Text(), nullable=True))
    op.add_column("run", sa.Column("paused_at", sa.DateTime(timezone=True), nullable=True))
    # The sweep's expiry scan: waiting runs, oldest pause first.
    op.create_index(
        "ix_run_waiting_paused_at",
        "run",
        ["paused_at"],
        postgresql_where=sa.text("status = 'requires_action'"),
    )
    op.drop_index("ix_run_conversation_unfinished", table_name="run")
    op.create_index(
        "ix_run_conversation_unfinished",
        "run",
        ["conversation_id", "created_at"],
        postgresql_where=sa.text("status IN ('queued', 'running', 'requires_action')"),
    )
    op.create_table(
        "run_approval",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("call_id", sa.String(200), nullable=False),
        sa.Column("tool", sa.String(200), nullable=False),
        sa.Column("arguments", sa.Text(), nullable=False),
        sa.Column("agent", sa.String(64), nullable=False),
        sa.Column("approved", sa.Boolean(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["run.id"], name=op.f("fk_run_approval_run_id_run"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_run_approval")),
        sa.UniqueConstraint("run_id", "call_id", name=op.f("uq_run_approval_run_id_call_id")),
    )


def downgrade() -> None:
    op.drop_table("run_approval")
    op.drop_index("ix_run_conversation_unfinished", table_name="run")
    op.create_index(
        "ix_run_conversation_unfinished",
        "run",
        ["conversation_id", "created_at"],
        postgresql_where=sa.text("status IN ('queued', 'running')"),
    )
    op.drop_index("ix_run_waiting_paused_at", table_name="run")
    op.drop_column("run", "paused_at")
    op.drop_column("run", "paused")
    op.execute("UPDATE run SET status = 'failed' WHERE status = 'requires_action'")
    op.drop_constraint(op.f("ck_run_status_known"), "run", type_="check")
    op.create_check_constraint(op.f("ck_run_status_known"), "run", OLD_STATUSES)
