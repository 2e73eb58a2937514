"""svc_catalog's tables, in its own database (``bookstore_catalog``)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from common.db import Timestamps, new_id
from common.events import Outbox, OutboxMessage
from common.idempotency import IdempotencyKey

LIVE = text("deleted_at IS NULL")


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSONB}


class Category(Timestamps, Base):
    __tablename__ = "categories"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    slug: Mapped[str] = mapped_column(String(80), unique=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    parent_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("categories.id"))


class Product(Timestamps, Base):
    __tablename__ = "products"
    __table_args__ = (
        # One live book per ISBN; a withdrawn book's ISBN can be used again.
        Index("uq_products_isbn13_live", "isbn13", unique=True, postgresql_where=LIVE),
        # One index per sort order the list endpoint offers (keyset pagination walks it)...
        Index("ix_products_title", "title", "id", postgresql_where=LIVE),
        Index("ix_products_price", "price_amount", "id", postgresql_where=LIVE),
        Index("ix_products_created", "created_at", "id", postgresql_where=LIVE),
        # ...and for the category filter, which browsing uses most.
        Index("ix_products_category_title", "category_id", "title", "id", postgresql_where=LIVE),
        Index("ix_products_author_keys", "author_keys", postgresql_using="gin"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    isbn13: Mapped[str] = mapped_column(String(13))
    title: Mapped[str] = mapped_column(String(500))
    authors: Mapped[list[str]] = mapped_column(ARRAY(String(200)))
    # Normalised author names (lower case, single spaces) for the author filter.
    author_keys: Mapped[list[str]] = mapped_column(ARRAY(String(200)))
    description: Mapped[str | None] = mapped_column(Text)
    category_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("categories.id"))
    price_amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    publication_year: Mapped[int | None] = mapped_column(SmallInteger)
    dimensions_mm: Mapped[list[int] | None] = mapped_column(ARRAY(Integer))
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    version: Mapped[int] = mapped_column(Integer)
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    # Optimistic concurrency: every UPDATE checks and bumps the version, so two
    # concurrent edits cannot silently overwrite each other.
    __mapper_args__ = {"version_id_col": version}


class CatalogOutboxMessage(OutboxMessage, Base):
    pass


class CatalogIdempotencyKey(IdempotencyKey, Base):
    pass


outbox = Outbox(CatalogOutboxMessage, source="catalog")
