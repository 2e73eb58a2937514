"""svc_catalog's tables, in its own database (``bookstore_catalog``)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

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

    #: In display order; the first is the primary image. Loaded with the product (one
    #: query per page of products, not one per product).
    images: Mapped[list[ProductImage]] = relationship(
        order_by="ProductImage.position", lazy="selectin", viewonly=True
    )


class ProductImage(Base):
    """One image of a product: the original and its thumbnails, stored in the bucket
    under content-addressed keys (``objects``: variant name -> key)."""

    __tablename__ = "product_images"
    __table_args__ = (
        Index("ix_product_images_product", "product_id", "position"),
        # "Does anything still use this object?" (deletions, orphans) without a scan.
        Index("ix_product_images_object_keys", "object_keys", postgresql_using="gin"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    product_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("products.id"))
    #: 0 is the primary image.
    position: Mapped[int] = mapped_column(Integer)
    #: sha256 of the original's bytes (hex).
    sha256: Mapped[str] = mapped_column(String(64))
    content_type: Mapped[str] = mapped_column(String(20))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    byte_size: Mapped[int] = mapped_column(Integer)
    objects: Mapped[dict[str, Any]] = mapped_column()
    #: The values of ``objects``, indexed.
    object_keys: Mapped[list[str]] = mapped_column(ARRAY(String(300)))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ImageUpload(Base):
    """An upload an administrator asked for: the one key the presigned form lets the
    client write, and the content type it promised. Confirming it attaches an image."""

    __tablename__ = "image_uploads"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    product_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("products.id"), index=True)
    key: Mapped[str] = mapped_column(String(300), unique=True)
    content_type: Mapped[str] = mapped_column(String(20))
    max_bytes: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    #: Set when confirmed: a second confirmation answers with the same image.
    image_id: Mapped[uuid.UUID | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ImageObjectDeletion(Base):
    """A bucket object to delete once nothing refers to it, written in the transaction
    that stopped referring to it: the deletion happens after the commit, and a crash
    (or S3 being away) only delays it (svc_catalog/images.py, ``delete_unused_objects``)."""

    __tablename__ = "image_object_deletions"

    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class StockLevel(Base):
    """Stock of one product. Available = on hand - reserved; the constraints make a
    negative or over-reserved stock impossible, whatever the code does."""

    __tablename__ = "stock_levels"
    __table_args__ = (
        CheckConstraint("on_hand >= 0", name="ck_stock_on_hand_not_negative"),
        CheckConstraint("reserved >= 0", name="ck_stock_reserved_not_negative"),
        CheckConstraint("reserved <= on_hand", name="ck_stock_not_over_reserved"),
    )

    product_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("products.id"), primary_key=True)
    on_hand: Mapped[int] = mapped_column(Integer, default=0)
    reserved: Mapped[int] = mapped_column(Integer, default=0)
    #: ``inventory.low_stock`` is published when available falls to this or below.
    low_stock_threshold: Mapped[int] = mapped_column(Integer, default=5)
    #: Raised by every change of the row (SQLAlchemy's version counter; the row is locked
    #: when changed). Inventory events carry it, so a consumer keeping a copy of the
    #: availability applies a late event only if it is newer than what it has.
    version: Mapped[int] = mapped_column(BigInteger, server_default="0")
    __mapper_args__ = {"version_id_col": version}
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class Reservation(Timestamps, Base):
    """Stock held for one order: ``held`` until committed (sold), released, or expired."""

    __tablename__ = "reservations"
    __table_args__ = (
        Index(
            "ix_reservations_held_expiry", "expires_at", postgresql_where=text("status = 'held'")
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    order_id: Mapped[uuid.UUID] = mapped_column(unique=True)
    status: Mapped[str] = mapped_column(String(20))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    items: Mapped[list[ReservationItem]] = relationship(
        back_populates="reservation", order_by="ReservationItem.product_id", lazy="selectin"
    )


class ReservationItem(Base):
    __tablename__ = "reservation_items"
    __table_args__ = (CheckConstraint("quantity > 0", name="ck_reservation_quantity_positive"),)

    reservation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("reservations.id", ondelete="CASCADE"), primary_key=True
    )
    product_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("products.id"), primary_key=True)
    quantity: Mapped[int] = mapped_column(Integer)
    reservation: Mapped[Reservation] = relationship(back_populates="items")


class Review(Base):
    """A buyer's rating (1 to 5) and review of a book: one per customer and book."""

    __tablename__ = "reviews"
    __table_args__ = (
        CheckConstraint("rating BETWEEN 1 AND 5", name="ck_reviews_rating_range"),
        # The database, not a read-then-write check, makes a second review a conflict.
        Index("uq_reviews_product_user", "product_id", "user_id", unique=True),
        Index("ix_reviews_product_created", "product_id", "created_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    product_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("products.id"))
    user_id: Mapped[uuid.UUID]
    rating: Mapped[int] = mapped_column(SmallInteger)
    title: Mapped[str | None] = mapped_column(String(200))
    body: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ProductRating(Base):
    """A book's rating totals, kept beside the product (not on it) so a review does not
    bump the product's version and ETag."""

    __tablename__ = "product_ratings"

    product_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("products.id"), primary_key=True)
    rating_count: Mapped[int] = mapped_column(Integer, default=0)
    rating_sum: Mapped[int] = mapped_column(Integer, default=0)


class CatalogOutboxMessage(OutboxMessage, Base):
    pass


class CatalogIdempotencyKey(IdempotencyKey, Base):
    pass


outbox = Outbox(CatalogOutboxMessage, source="catalog")
