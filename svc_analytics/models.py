"""svc_analytics's tables, in its own database (``bookstore_analytics``).

Aggregates are kept per 5-minute window and currency (:class:`Window`), with the
products and shipping countries of each window beside them; hours and days are rolled
up when read. :class:`AnalyticsOrder` is what makes counting once per order and
attributing refunds possible; :class:`LateTally` holds what came beyond the allowed
lateness; :class:`Clock` the watermark.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, DateTime, Float, Integer, SmallInteger, String, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from common.consumers import HandledEvent
from common.events import Outbox, OutboxMessage


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSONB}


class Counters:
    orders: Mapped[int] = mapped_column(Integer, default=0)
    units: Mapped[int] = mapped_column(Integer, default=0)
    gross: Mapped[int] = mapped_column(BigInteger, default=0)
    refunds: Mapped[int] = mapped_column(BigInteger, default=0)
    #: Orders placed (``order.created``): paid orders over these is the conversion.
    checkouts: Mapped[int] = mapped_column(Integer, default=0)


class Window(Counters, Base):
    __tablename__ = "windows"

    start: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    #: When the watermark passed the window's end (None: still open).
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: Corrections published since it closed.
    revision: Mapped[int] = mapped_column(Integer, default=0)


class LateTally(Counters, Base):
    """Facts that came after their window's allowed lateness, by the window they belong to."""

    __tablename__ = "late_tally"

    start: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)


class WindowProduct(Base):
    __tablename__ = "window_products"

    start: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    product_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    units: Mapped[int] = mapped_column(Integer)
    revenue: Mapped[int] = mapped_column(BigInteger)


class WindowCountry(Base):
    __tablename__ = "window_countries"

    start: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    #: ISO 3166 alpha-2 of the shipping address (``ZZ``: none given).
    country: Mapped[str] = mapped_column(String(2), primary_key=True)
    orders: Mapped[int] = mapped_column(Integer)
    revenue: Mapped[int] = mapped_column(BigInteger)


class Product(Base):
    """A product's title as the newest order line said it (reports show names)."""

    __tablename__ = "products"

    product_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(500))


class AnalyticsOrder(Base):
    __tablename__ = "orders"

    order_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    currency: Mapped[str] = mapped_column(String(3))
    window_start: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: True: counted in its window; False: in the late tally; None: not paid yet.
    counted: Mapped[bool | None] = mapped_column(Boolean)
    refunded: Mapped[int] = mapped_column(BigInteger, default=0)
    #: Counted as a checkout (its ``order.created``).
    placed: Mapped[bool] = mapped_column(Boolean, default=False)


class Clock(Base):
    """One row: the newest event time seen, and the watermark it gives."""

    __tablename__ = "clock"

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    max_event_time: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    watermark: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Anomaly(Base):
    __tablename__ = "anomalies"

    start: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    metric: Mapped[str] = mapped_column(String(20), primary_key=True)
    value: Mapped[float] = mapped_column(Float)
    baseline: Mapped[float] = mapped_column(Float)
    score: Mapped[float] = mapped_column(Float)
    direction: Mapped[str] = mapped_column(String(5))
    detected_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class AnalyticsHandledEvent(HandledEvent, Base):
    pass


class AnalyticsOutboxMessage(OutboxMessage, Base):
    pass


outbox = Outbox(AnalyticsOutboxMessage, source="analytics")
