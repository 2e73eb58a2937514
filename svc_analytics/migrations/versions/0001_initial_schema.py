"""windows, late tally, products and countries per window, orders, clock, anomalies

Revision ID: 0001
Revises:
Create Date: 2026-12-08 01:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _window_key() -> list[sa.Column]:
    return [
        sa.Column("start", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("currency", sa.String(3), primary_key=True),
    ]


def _counters() -> list[sa.Column]:
    return [
        sa.Column("orders", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("units", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("gross", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("refunds", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("checkouts", sa.Integer(), nullable=False, server_default="0"),
    ]


def upgrade() -> None:
    op.create_table(
        "windows",
        *_window_key(),
        *_counters(),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revision", sa.Integer(), nullable=False, server_default="0"),
    )
    # Reports read a currency's windows by time (the key leads with the time).
    op.create_index("ix_windows_currency_start", "windows", ["currency", "start"])
    op.execute("CREATE INDEX ix_windows_open ON windows (start) WHERE closed_at IS NULL")
    op.create_table("late_tally", *_window_key(), *_counters())
    op.create_table(
        "window_products",
        *_window_key(),
        sa.Column("product_id", sa.Uuid(), primary_key=True),
        sa.Column("units", sa.Integer(), nullable=False),
        sa.Column("revenue", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_window_products_currency_start", "window_products", ["currency", "start"])
    op.create_table(
        "window_countries",
        *_window_key(),
        sa.Column("country", sa.String(2), primary_key=True),
        sa.Column("orders", sa.Integer(), nullable=False),
        sa.Column("revenue", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_window_countries_currency_start", "window_countries", ["currency", "start"])
    op.create_table(
        "products",
        sa.Column("product_id", sa.Uuid(), primary_key=True),
        sa.Column("title", sa.String(500), nullable=False),
    )
    op.create_table(
        "orders",
        sa.Column("order_id", sa.Uuid(), primary_key=True),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("counted", sa.Boolean(), nullable=True),
        sa.Column("refunded", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("placed", sa.Boolean(), nullable=False, server_default="false"),
    )
    op.create_table(
        "clock",
        sa.Column("id", sa.SmallInteger(), primary_key=True),
        sa.Column("max_event_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("watermark", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "anomalies",
        *_window_key(),
        sa.Column("metric", sa.String(20), primary_key=True),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("baseline", sa.Float(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("direction", sa.String(5), nullable=False),
        sa.Column(
            "detected_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
    )
    op.create_table(
        "handled_events",
        sa.Column("event_id", sa.Uuid(), primary_key=True),
        sa.Column("handler", sa.String(200), primary_key=True),
        sa.Column(
            "handled_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
    )
    op.create_index("ix_handled_events_handled_at", "handled_events", ["handled_at"])
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), primary_key=True),
        sa.Column("event_id", sa.Uuid(), nullable=False, unique=True),
        sa.Column("event_type", sa.String(100), nullable=False),
        sa.Column("envelope", postgresql.JSONB(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.execute("CREATE INDEX ix_outbox_unpublished ON outbox (id) WHERE published_at IS NULL")


def downgrade() -> None:
    for table in (
        "outbox",
        "handled_events",
        "anomalies",
        "clock",
        "orders",
        "products",
        "window_countries",
        "window_products",
        "late_tally",
        "windows",
    ):
        op.drop_table(table)
