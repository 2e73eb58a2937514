"""svc_search's tables, in its own database (``bookstore_search``).

``search_documents`` is the PostgreSQL search index: one row per book as search sees it
(the catalog's product, its availability and its rating), fed by events and rebuilt from
the catalog. Its indexes are created by the migrations only; a rebuild copies their
definitions from ``pg_indexes`` onto the table it builds (svc_search/rebuild.py), so the
two cannot drift apart. The recommender's interactions and trained models live here too.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Computed,
    DateTime,
    Float,
    Identity,
    Integer,
    SmallInteger,
    String,
    Text,
    Uuid,
    func,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TSVECTOR
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from common.consumers import HandledEvent

DOCUMENTS_TABLE = "search_documents"
TERMS_TABLE = "search_terms"

#: The weighted full-text vector: title and ISBN weigh most, then authors, then the
#: description. One text search configuration (english) for every field, so a query
#: stemmed once matches all of them ("Williams" -> "william" on both sides).
SEARCH_VECTOR_SQL = (
    "setweight(to_tsvector('english'::regconfig, coalesce(title, '')), 'A') || "
    "setweight(to_tsvector('english'::regconfig, isbn13), 'A') || "
    "setweight(to_tsvector('english'::regconfig, coalesce(authors_text, '')), 'B') || "
    "setweight(to_tsvector('english'::regconfig, coalesce(description, '')), 'C')"
)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSONB}


class SearchDocument(Base):
    __tablename__ = DOCUMENTS_TABLE

    product_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    isbn13: Mapped[str] = mapped_column(String(13))
    title: Mapped[str] = mapped_column(Text)
    authors: Mapped[list[str]] = mapped_column(ARRAY(Text))
    # Names joined by " ; " for the text vector (a generated column cannot call
    # array_to_string, which is not immutable).
    authors_text: Mapped[str] = mapped_column(Text)
    #: Normalised names (lower case, single spaces), the author filter's and facet's key.
    author_keys: Mapped[list[str]] = mapped_column(ARRAY(Text))
    description: Mapped[str | None] = mapped_column(Text)
    category_id: Mapped[uuid.UUID | None]
    #: The category and its ancestors: filtering by a category includes subcategories.
    category_path: Mapped[list[uuid.UUID]] = mapped_column(ARRAY(Uuid))
    category_name: Mapped[str | None] = mapped_column(Text)
    price_amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    publication_year: Mapped[int | None] = mapped_column(SmallInteger)
    #: When the book entered the catalog ("newest" sorts by it).
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    #: The catalog's version of the product: older events never overwrite newer data.
    product_version: Mapped[int] = mapped_column(Integer)
    available: Mapped[int] = mapped_column(Integer, default=0)
    in_stock: Mapped[bool] = mapped_column(Boolean, Computed("available > 0", persisted=True))
    #: The catalog's stock version ``available`` came with: older figures are ignored.
    stock_version: Mapped[int] = mapped_column(BigInteger, server_default="0")
    rating_average: Mapped[float] = mapped_column(Float, default=0.0)
    rating_count: Mapped[int] = mapped_column(Integer, default=0)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    #: Set by every change, cleared when Elasticsearch has the row (when it is used).
    es_dirty: Mapped[bool] = mapped_column(Boolean, default=True)
    indexed_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )
    search_vector: Mapped[Any] = mapped_column(
        TSVECTOR, Computed(SEARCH_VECTOR_SQL, persisted=True)
    )


class SearchTerm(Base):
    """Words of titles and author names with how many books use them: the lexicon the
    typo corrector looks up by trigram similarity (small, so the lookup is fast)."""

    __tablename__ = TERMS_TABLE

    term: Mapped[str] = mapped_column(Text, primary_key=True)
    frequency: Mapped[int] = mapped_column(Integer)


class IndexBuild(Base):
    """One rebuild of the index from the catalog, for operators (``index_status``)."""

    __tablename__ = "index_builds"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: ``running``, ``finished`` or ``failed``.
    status: Mapped[str] = mapped_column(String(20))
    documents: Mapped[int] = mapped_column(Integer, default=0)
    seconds: Mapped[float | None] = mapped_column(Float)
    detail: Mapped[str | None] = mapped_column(Text)


class Interaction(Base):
    """A customer bought a book (from ``order.paid``): what the recommender learns from."""

    __tablename__ = "interactions"

    order_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    product_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(index=True)
    quantity: Mapped[int] = mapped_column(Integer)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class RecommenderModel(Base):
    """One trained model; the newest is the one served."""

    __tablename__ = "recommender_models"

    version: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    trained_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    algorithm: Mapped[str] = mapped_column(String(50))
    users: Mapped[int] = mapped_column(Integer)
    items: Mapped[int] = mapped_column(Integer)
    interactions: Mapped[int] = mapped_column(Integer)
    seconds: Mapped[float] = mapped_column(Float)
    parameters: Mapped[dict[str, Any]] = mapped_column(default=dict)


class ItemNeighbor(Base):
    """ "Customers who bought this also bought": a model's top neighbours per book."""

    __tablename__ = "item_neighbors"

    model_version: Mapped[int] = mapped_column(Integer, primary_key=True)
    product_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    neighbor_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    score: Mapped[float] = mapped_column(Float)


class PopularItem(Base):
    """A model's most bought books: the fallback for new customers and new books."""

    __tablename__ = "popular_items"

    model_version: Mapped[int] = mapped_column(Integer, primary_key=True)
    rank: Mapped[int] = mapped_column(Integer, primary_key=True)
    product_id: Mapped[uuid.UUID]
    purchases: Mapped[int] = mapped_column(Integer)


class SearchHandledEvent(HandledEvent, Base):
    pass
