"""svc_payment's tables, in its own database (``bookstore_payment``).

Card numbers never reach these tables (or the logs): a payment keeps the brand and the
last four digits, which is what a receipt shows and what PCI DSS allows us to keep.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, ForeignKey, Identity, Index, String, Text, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from common.db import Timestamps, new_id
from common.events import Outbox, OutboxMessage


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSONB}


class Payment(Timestamps, Base):
    """The one payment of an order: its authorization, and later its refund."""

    __tablename__ = "payments"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    # Unique: one payment per order, enforced by the database, which is also what
    # serialises concurrent authorize calls for one order (see payments.authorize).
    order_id: Mapped[uuid.UUID] = mapped_column(unique=True)
    #: ``authorized``, ``requires_action`` (the customer must authenticate, 3-D Secure;
    #: the outcome arrives by webhook), ``declined``, ``canceled`` (an action never
    #: completed) or ``refunded`` (in full; partial refunds only raise ``refunded_amount``).
    status: Mapped[str] = mapped_column(String(20))
    decline_code: Mapped[str | None] = mapped_column(String(50))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    card_brand: Mapped[str] = mapped_column(String(20))
    card_last4: Mapped[str] = mapped_column(String(4))
    #: Which provider handled it (``mock``, later ``stripe``) and its id for it.
    provider: Mapped[str] = mapped_column(String(20))
    provider_reference: Mapped[str] = mapped_column(String(255))
    refunded_amount: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    #: What the customer's client must do next (Stripe's ``next_action``), and the
    #: PaymentIntent's client secret it needs for that; only while ``requires_action``.
    next_action: Mapped[dict[str, Any] | None]
    client_secret: Mapped[str | None] = mapped_column(String(255))
    refunded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    refund_reason: Mapped[str | None] = mapped_column(String(500))
    refund_reference: Mapped[str | None] = mapped_column(String(255))


class PaymentAttempt(Base):
    """Every authorize and refund call, whatever came of it: the audit trail support and
    disputes need ("the customer says they tried three times")."""

    __tablename__ = "payment_attempts"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    order_id: Mapped[uuid.UUID]
    payment_id: Mapped[uuid.UUID | None]
    #: ``authorize`` or ``refund``.
    operation: Mapped[str] = mapped_column(String(20))
    #: ``authorized``, ``declined``, ``refused`` (bad input, never reached the provider),
    #: ``replayed`` (answered with the order's existing payment) or ``refunded``.
    outcome: Mapped[str] = mapped_column(String(20))
    decline_code: Mapped[str | None] = mapped_column(String(50))
    #: Why a refused attempt was refused (the error's detail, never the card number).
    detail: Mapped[str | None] = mapped_column(Text)
    amount: Mapped[int | None] = mapped_column(BigInteger)
    currency: Mapped[str | None] = mapped_column(String(3))
    provider: Mapped[str | None] = mapped_column(String(20))
    provider_reference: Mapped[str | None] = mapped_column(String(255))
    correlation_id: Mapped[str | None] = mapped_column(String(100))
    attempted_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )

    __table_args__ = (Index("ix_payment_attempts_order_id_id", "order_id", "id"),)


class Refund(Base):
    """One refund (full or partial) of a payment; their sum never exceeds the amount."""

    __tablename__ = "refunds"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    payment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("payments.id"), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(String(500))
    provider_reference: Mapped[str | None] = mapped_column(String(255), unique=True)
    #: ``api`` (we asked for it) or ``provider`` (learnt from a webhook: the dashboard).
    origin: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ProviderEvent(Base):
    """A webhook event from the provider, stored once: providers deliver at least once."""

    __tablename__ = "provider_events"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(100))
    reference: Mapped[str | None] = mapped_column(String(255), index=True)
    #: What we did with it: ``applied``, ``ignored`` (stale or already known) or
    #: ``unmatched`` (no payment of ours has this reference).
    outcome: Mapped[str] = mapped_column(String(20))
    received_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class PaymentOutboxMessage(OutboxMessage, Base):
    pass


outbox = Outbox(PaymentOutboxMessage, source="payment")
