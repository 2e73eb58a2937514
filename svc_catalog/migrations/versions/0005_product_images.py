"""product images, the uploads that bring them, and the objects waiting to be deleted

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-08 00:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "product_images",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("product_id", sa.Uuid(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("content_type", sa.String(length=20), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("byte_size", sa.Integer(), nullable=False),
        sa.Column("objects", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("object_keys", postgresql.ARRAY(sa.String(length=300)), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(["product_id"], ["products.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_product_images_product", "product_images", ["product_id", "position"], unique=False
    )
    op.create_index(
        "ix_product_images_object_keys",
        "product_images",
        ["object_keys"],
        unique=False,
        postgresql_using="gin",
    )
    op.create_table(
        "image_uploads",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("product_id", sa.Uuid(), nullable=False),
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("content_type", sa.String(length=20), nullable=False),
        sa.Column("max_bytes", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("image_id", sa.Uuid(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(["product_id"], ["products.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key"),
    )
    op.create_index("ix_image_uploads_product_id", "image_uploads", ["product_id"], unique=False)
    op.create_index("ix_image_uploads_expires_at", "image_uploads", ["expires_at"], unique=False)
    op.create_table(
        "image_object_deletions",
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_index(
        "ix_image_object_deletions_due_at", "image_object_deletions", ["due_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_image_object_deletions_due_at", table_name="image_object_deletions")
    op.drop_table("image_object_deletions")
    op.drop_index("ix_image_uploads_expires_at", table_name="image_uploads")
    op.drop_index("ix_image_uploads_product_id", table_name="image_uploads")
    op.drop_table("image_uploads")
    op.drop_index("ix_product_images_object_keys", table_name="product_images")
    op.drop_index("ix_product_images_product", table_name="product_images")
    op.drop_table("product_images")
