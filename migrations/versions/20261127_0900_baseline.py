"""Baseline: the task failure log kept by the workers.

Revision ID: 20261127_0900
Revises:
Create Date: 2026-11-27 09:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "20261127_0900"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "task_failure",
        sa.Column("task_id", sa.String(length=64), nullable=False),
        sa.Column("task_name", sa.String(length=200), nullable=False),
        sa.Column("call_args", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("call_kwargs", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("exception_type", sa.String(length=200), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("traceback", sa.Text(), nullable=False),
        sa.Column("request_id", sa.String(length=128), nullable=True),
        sa.Column("retries", sa.Integer(), nullable=False),
        sa.Column(
            "failed_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_failure")),
    )
    op.create_index(op.f("ix_task_failure_failed_at"), "task_failure", ["failed_at"], unique=False)
    op.create_index(op.f("ix_task_failure_task_id"), "task_failure", ["task_id"], unique=False)
    op.create_index(op.f("ix_task_failure_task_name"), "task_failure", ["task_name"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_task_failure_task_name"), table_name="task_failure")
    op.drop_index(op.f("ix_task_failure_task_id"), table_name="task_failure")
    op.drop_index(op.f("ix_task_failure_failed_at"), table_name="task_failure")
    op.drop_table("task_failure")
