"""how to reach the customer about an order, carried by its events

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07 21:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("orders", sa.Column("contact", postgresql.JSONB(), nullable=True))


def downgrade() -> None:
    op.drop_column("orders", "contact")
