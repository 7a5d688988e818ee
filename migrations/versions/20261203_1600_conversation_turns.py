"""Runs take turns in a conversation: a run waiting for the ones before it keeps its message
aside (``pending_message``) until its turn, is queued from then (``queued_at``), and may be
marked to be stopped by a later chat (``stop``: interrupt or rollback).

Revision ID: 20261203_1600
Revises: 20261203_1530
Create Date: 2026-12-03 16:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261203_1600"
down_revision: str | None = "20261203_1530"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("run", sa.Column("pending_message", sa.Text(), nullable=True))
    op.add_column("run", sa.Column("queued_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("run", sa.Column("stop", sa.String(16), nullable=True))
    op.create_check_constraint(
        op.f("ck_run_stop_known"), "run", "stop IS NULL OR stop IN ('interrupt', 'rollback')"
    )
    # The unfinished runs of a conversation, oldest first: what a chat and a run's end read.
    op.create_index(
        "ix_run_conversation_unfinished",
        "run",
        ["conversation_id", "created_at"],
        postgresql_where=sa.text("status IN ('queued', 'running')"),
    )


def downgrade() -> None:
    op.drop_index("ix_run_conversation_unfinished", table_name="run")
    op.drop_constraint(op.f("ck_run_stop_known"), "run", type_="check")
    op.drop_column("run", "stop")
    op.drop_column("run", "queued_at")
    op.drop_column("run", "pending_message")
