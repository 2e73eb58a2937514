"""search index, lexicon, recommender

Revision ID: 0001
Revises:
Create Date: 2026-11-22 03:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Written out here (not imported from models) so this revision stays what it was.
SEARCH_VECTOR_SQL = (
    "setweight(to_tsvector('english'::regconfig, coalesce(title, '')), 'A') || "
    "setweight(to_tsvector('english'::regconfig, isbn13), 'A') || "
    "setweight(to_tsvector('english'::regconfig, coalesce(authors_text, '')), 'B') || "
    "setweight(to_tsvector('english'::regconfig, coalesce(description, '')), 'C')"
)


def upgrade() -> None:
    # Trigram similarity for typo tolerance. pg_trgm ships with PostgreSQL (contrib) and
    # is a "trusted" extension since 13, so the database owner may create it.
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.create_table(
        "search_documents",
        sa.Column("product_id", sa.Uuid(), primary_key=True),
        sa.Column("isbn13", sa.String(13), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("authors", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("authors_text", sa.Text(), nullable=False),
        sa.Column("author_keys", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("category_id", sa.Uuid(), nullable=True),
        sa.Column(
            "category_path", postgresql.ARRAY(sa.Uuid()), nullable=False, server_default="{}"
        ),
        sa.Column("category_name", sa.Text(), nullable=True),
        sa.Column("price_amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("publication_year", sa.SmallInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("product_version", sa.Integer(), nullable=False),
        sa.Column("available", sa.Integer(), nullable=False, server_default="0"),
        sa.Column(
            "in_stock", sa.Boolean(), sa.Computed("available > 0", persisted=True), nullable=False
        ),
        sa.Column("rating_average", sa.Float(), nullable=False, server_default="0"),
        sa.Column("rating_count", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("deleted", sa.Boolean(), nullable=False, server_default="false"),
        sa.Column("es_dirty", sa.Boolean(), nullable=False, server_default="true"),
        sa.Column(
            "indexed_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "search_vector", postgresql.TSVECTOR(), sa.Computed(SEARCH_VECTOR_SQL, persisted=True)
        ),
    )
    live = "WHERE NOT deleted"
    for statement in (
        "CREATE INDEX ix_search_documents_vector ON search_documents "
        f"USING gin (search_vector) {live}",
        "CREATE INDEX ix_search_documents_title_trgm ON search_documents "
        f"USING gin (title gin_trgm_ops) {live}",
        f"CREATE INDEX ix_search_documents_isbn ON search_documents (isbn13) {live}",
        "CREATE INDEX ix_search_documents_category_path ON search_documents "
        f"USING gin (category_path) {live}",
        "CREATE INDEX ix_search_documents_author_keys ON search_documents "
        f"USING gin (author_keys) {live}",
        "CREATE INDEX ix_search_documents_price ON search_documents "
        f"(price_amount, product_id) {live}",
        "CREATE INDEX ix_search_documents_created ON search_documents "
        f"(created_at, product_id) {live}",
        "CREATE INDEX ix_search_documents_rating ON search_documents "
        f"(rating_average, rating_count, product_id) {live}",
        "CREATE INDEX ix_search_documents_es_dirty ON search_documents (product_id) WHERE es_dirty",
    ):
        op.execute(statement)

    op.create_table(
        "search_terms",
        sa.Column("term", sa.Text(), primary_key=True),
        sa.Column("frequency", sa.Integer(), nullable=False),
    )
    op.execute("CREATE INDEX ix_search_terms_trgm ON search_terms USING gin (term gin_trgm_ops)")
    op.create_table(
        "index_builds",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), primary_key=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("documents", sa.Integer(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
    )
    op.create_table(
        "interactions",
        sa.Column("order_id", sa.Uuid(), primary_key=True),
        sa.Column("product_id", sa.Uuid(), primary_key=True),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_interactions_user_id", "interactions", ["user_id"])
    op.create_table(
        "recommender_models",
        sa.Column("version", sa.Integer(), sa.Identity(always=False), primary_key=True),
        sa.Column("trained_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("algorithm", sa.String(50), nullable=False),
        sa.Column("users", sa.Integer(), nullable=False),
        sa.Column("items", sa.Integer(), nullable=False),
        sa.Column("interactions", sa.Integer(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("parameters", postgresql.JSONB(), nullable=False),
    )
    op.create_table(
        "item_neighbors",
        sa.Column("model_version", sa.Integer(), primary_key=True),
        sa.Column("product_id", sa.Uuid(), primary_key=True),
        sa.Column("neighbor_id", sa.Uuid(), primary_key=True),
        sa.Column("score", sa.Float(), nullable=False),
    )
    op.create_table(
        "popular_items",
        sa.Column("model_version", sa.Integer(), primary_key=True),
        sa.Column("rank", sa.Integer(), primary_key=True),
        sa.Column("product_id", sa.Uuid(), nullable=False),
        sa.Column("purchases", sa.Integer(), nullable=False),
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


def downgrade() -> None:
    for table in (
        "handled_events",
        "popular_items",
        "item_neighbors",
        "recommender_models",
        "interactions",
        "index_builds",
        "search_terms",
        "search_documents",
    ):
        op.drop_table(table)
