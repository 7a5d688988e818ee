"""Members and plan limits: invitations, each plan's limits with a seeded free plan, and the
usage thresholds a tenant crossed.

Revision ID: 20261203_0930
Revises: 20261128_1110
Create Date: 2026-12-03 09:30:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261203_0930"
down_revision: str | None = "20261128_1110"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LIMITS = (
    "max_seats",
    "runs_per_minute",
    "concurrent_runs",
    "monthly_tokens",
    "open_streams_per_user",
)

# Defaults of the built-in catalogue; `switchboard billing limits` changes them.
CATALOGUE = {
    "free": (3, 10, 2, 200_000, 5),
    "starter": (10, 60, 10, None, 10),
    "team": (50, 300, 50, None, 20),
    "business": (None, 1_000, 200, None, 50),
}


def upgrade() -> None:
    op.create_table(
        "invitation",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("invited_by", sa.Uuid(), nullable=True),
        sa.Column("selector", sa.String(length=32), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("accepted_by", sa.Uuid(), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "role IN ('owner', 'admin', 'member', 'billing')",
            name=op.f("ck_invitation_role_known"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenant.id"],
            name=op.f("fk_invitation_tenant_id_tenant"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["invited_by"],
            ["user.id"],
            name=op.f("fk_invitation_invited_by_user"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["accepted_by"],
            ["user.id"],
            name=op.f("fk_invitation_accepted_by_user"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invitation")),
        sa.UniqueConstraint("selector", name=op.f("uq_invitation_selector")),
    )
    op.create_index(op.f("ix_invitation_tenant_id"), "invitation", ["tenant_id"])
    op.create_index(
        "uq_invitation_open_email",
        "invitation",
        ["tenant_id", sa.text("lower(email)")],
        unique=True,
        postgresql_where=sa.text("accepted_at IS NULL AND revoked_at IS NULL"),
    )

    for name in LIMITS:
        kind = sa.BigInteger() if name == "monthly_tokens" else sa.Integer()
        op.add_column("plan", sa.Column(name, kind, nullable=True))
    plan = sa.table(
        "plan",
        sa.column("code", sa.String),
        sa.column("name", sa.String),
        sa.column("seat_price_cents", sa.Integer),
        sa.column("included_tokens", sa.BigInteger),
        sa.column("active", sa.Boolean),
        *(sa.column(name, sa.BigInteger) for name in LIMITS),
    )
    op.bulk_insert(
        plan,
        [
            {
                "code": "free",
                "name": "Free",
                "seat_price_cents": 0,
                "included_tokens": 0,
                "active": True,
                **dict(zip(LIMITS, CATALOGUE["free"], strict=True)),
            }
        ],
    )
    for code, values in CATALOGUE.items():
        if code != "free":
            op.execute(
                plan.update()
                .where(plan.c.code == code)
                .values(**dict(zip(LIMITS, values, strict=True)))
            )

    op.create_table(
        "usage_threshold",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("percent", sa.Integer(), nullable=False),
        sa.Column("tokens", sa.BigInteger(), nullable=False),
        sa.Column("limit_tokens", sa.BigInteger(), nullable=False),
        sa.Column(
            "reached_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenant.id"],
            name=op.f("fk_usage_threshold_tenant_id_tenant"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "tenant_id", "period_start", "percent", name=op.f("pk_usage_threshold")
        ),
    )


def downgrade() -> None:
    op.drop_table("usage_threshold")
    op.execute("DELETE FROM plan WHERE code = 'free'")
    for name in reversed(LIMITS):
        op.drop_column("plan", name)
    op.drop_index("uq_invitation_open_email", table_name="invitation")
    op.drop_index(op.f("ix_invitation_tenant_id"), table_name="invitation")
    op.drop_table("invitation")
