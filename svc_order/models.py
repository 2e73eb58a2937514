"""svc_order's tables, in its own database (``bookstore_order``)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from common.consumers import HandledEvent
from common.db import Timestamps
from common.events import Outbox, OutboxMessage


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSONB}


class CartItem(Base):
    """One line of a customer's cart (a customer's cart is their lines)."""

    __tablename__ = "cart_items"
    __table_args__ = (CheckConstraint("quantity > 0", name="ck_cart_quantity_positive"),)

    user_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    product_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    quantity: Mapped[int] = mapped_column(Integer)
    #: The price shown when the line was last changed, to flag later price changes.
    unit_price_amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), index=True
    )


class Order(Timestamps, Base):
    __tablename__ = "orders"
    __table_args__ = (
        UniqueConstraint("user_id", "idempotency_key", name="uq_orders_user_idempotency_key"),
        Index("ix_orders_user_created", "user_id", "created_at", "id"),
        Index("ix_orders_created", "created_at", "id"),
        # What the convergence timer scans: unfinished checkouts and compensations.
        Index(
            "ix_orders_unsettled",
            "created_at",
            postgresql_where=text("status = 'PENDING_PAYMENT' OR compensation_pending"),
        ),
    )

    #: Derived from (user, Idempotency-Key): a replayed checkout finds its order, and
    #: the other services see the same id on every retry of a step.
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    user_id: Mapped[uuid.UUID]
    idempotency_key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20))
    currency: Mapped[str] = mapped_column(String(3))
    subtotal_amount: Mapped[int] = mapped_column(BigInteger)
    shipping_amount: Mapped[int] = mapped_column(BigInteger)
    total_amount: Mapped[int] = mapped_column(BigInteger)
    shipping_address: Mapped[dict[str, Any]]
    payment: Mapped[dict[str, Any] | None]
    #: Why it was cancelled (``out_of_stock``, ``payment_declined``...), and specifics.
    cancel_reason: Mapped[str | None] = mapped_column(String(40))
    failure: Mapped[dict[str, Any] | None]
    #: How to reach the customer (email, name, phone) as their account said at checkout;
    #: the order's events carry it (docs/decisions/0085). Cleared if the account goes.
    contact: Mapped[dict[str, Any] | None]
    #: Stock to give back and/or a payment to refund, not done yet (the timer retries).
    compensation_pending: Mapped[bool] = mapped_column(default=False)
    paid_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    shipped_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cancelled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    refunded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    # Loaded when read (one query each, by key), not with every order: the saga's steps
    # load an order only to let it decide (svc_order/domain.py needs neither), and
    # listings ask for both with ``selectinload`` (orders.list_orders).
    items: Mapped[list[OrderItem]] = relationship(
        back_populates="order", order_by="OrderItem.position", lazy="select"
    )
    history: Mapped[list[OrderStatusChange]] = relationship(
        order_by="OrderStatusChange.id", lazy="select"
    )


class OrderItem(Base):
    __tablename__ = "order_items"

    order_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("orders.id", ondelete="CASCADE"), primary_key=True
    )
    product_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    position: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(500))
    isbn13: Mapped[str] = mapped_column(String(13))
    unit_price_amount: Mapped[int] = mapped_column(BigInteger)
    quantity: Mapped[int] = mapped_column(Integer)
    order: Mapped[Order] = relationship(back_populates="items")


class OrderStatusChange(Base):
    __tablename__ = "order_status_changes"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    order_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("orders.id", ondelete="CASCADE"), index=True
    )
    from_status: Mapped[str | None] = mapped_column(String(20))
    to_status: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(String(200))
    actor_id: Mapped[uuid.UUID | None]
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class OrderHandledEvent(HandledEvent, Base):
    pass


class OrderOutboxMessage(OutboxMessage, Base):
    pass


outbox = Outbox(OrderOutboxMessage, source="order")
