"""exact title lookups, for ranking broad searches

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 02:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A broad text ranks a sample of its matches plus the books titled exactly so
    # (svc_search/backends/postgres.py): this index finds those without visiting matches.
    # A rebuild copies it to the new table with the others (from pg_indexes).
    op.execute(
        "CREATE INDEX ix_search_documents_title_lower ON search_documents "
        "(lower(title)) WHERE NOT deleted"
    )


def downgrade() -> None:
    op.execute("DROP INDEX ix_search_documents_title_lower")
