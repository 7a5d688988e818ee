"""Usage records: index on the report batch, so marking a batch does not scan the table.

Revision ID: 20261128_1110
Revises: 20261128_1100
Create Date: 2026-11-28 11:10:00+00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "20261128_1110"
down_revision: str | None = "20261128_1100"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_usage_record_report_batch_id", "usage_record", ["report_batch_id"])


def downgrade() -> None:
    op.drop_index("ix_usage_record_report_batch_id", table_name="usage_record")
