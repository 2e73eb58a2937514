"""access token revocations, polled by the gateways

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 03:10:00
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
        "access_revocations",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("session_id", sa.Uuid(), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        op.f("ix_access_revocations_revoked_at"),
        "access_revocations",
        ["revoked_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_access_revocations_revoked_at"), table_name="access_revocations")
    op.drop_table("access_revocations")
