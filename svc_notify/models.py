"""svc_notify's tables, in its own database (``bookstore_notify``).

A notification or webhook call is a :class:`Delivery`, written in the same transaction
that marks the event handled, then sent by the dispatcher (svc_notify/dispatch.py) with
retries; each try is a :class:`DeliveryAttempt`, which is the audit log admins read.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    SmallInteger,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from common.consumers import HandledEvent
from common.db import Timestamps, new_id, utcnow


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSONB}


class NotifyHandledEvent(HandledEvent, Base):
    pass


class Preference(Base):
    """A customer's channels for order and payment news (account security emails go
    regardless). No row: the defaults, email on and SMS off (SMS needs an opt-in)."""

    __tablename__ = "preferences"

    user_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    email: Mapped[bool] = mapped_column(Boolean)
    sms: Mapped[bool] = mapped_column(Boolean)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class WebhookEndpoint(Timestamps, Base):
    __tablename__ = "webhook_endpoints"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    url: Mapped[str] = mapped_column(String(2000))
    event_types: Mapped[list[str]] = mapped_column(ARRAY(String(100)))
    # Read back to sign every delivery, so it cannot be stored as a hash.
    secret: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(String(500))
    #: Deleting an endpoint deactivates it: its delivery history stays readable.
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class Delivery(Timestamps, Base):
    """One message to one recipient over one channel, for one event."""

    __tablename__ = "deliveries"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    #: ``email``, ``sms`` or ``webhook``.
    channel: Mapped[str] = mapped_column(String(20))
    event_id: Mapped[uuid.UUID]
    event_type: Mapped[str] = mapped_column(String(100))
    correlation_id: Mapped[str | None] = mapped_column(String(100))
    user_id: Mapped[uuid.UUID | None]
    endpoint_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("webhook_endpoints.id"))
    #: An email address, a phone number or a URL; None when there is none to send to.
    recipient: Mapped[str | None] = mapped_column(String(2000))
    template: Mapped[str | None] = mapped_column(String(100))
    #: What is sent: {subject, text, html} for email, {text} for SMS, {body} for webhooks.
    content: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    #: ``pending`` (waiting for its next try), ``sent``, ``parked`` (gave up; an admin
    #: can replay it) or ``skipped`` (nothing could be sent: no address, a template error).
    status: Mapped[str] = mapped_column(String(20))
    attempts: Mapped[int] = mapped_column(SmallInteger, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
    provider_message_id: Mapped[str | None] = mapped_column(String(300))

    __table_args__ = (
        # The dispatcher's only question: what is due?
        Index("ix_deliveries_due", "next_attempt_at", postgresql_where=text("status = 'pending'")),
        Index("ix_deliveries_endpoint", "endpoint_id", "created_at", "id"),
    )


class DeliveryAttempt(Base):
    """Every try of every delivery (and the decision not to send one): the audit log."""

    __tablename__ = "delivery_attempts"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    delivery_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("deliveries.id"), index=True)
    attempt: Mapped[int] = mapped_column(SmallInteger)
    #: ``sent``, ``failed`` (will be retried), ``parked`` (the last try failed) or
    #: ``skipped``.
    outcome: Mapped[str] = mapped_column(String(20))
    error: Mapped[str | None] = mapped_column(Text)
    provider_message_id: Mapped[str | None] = mapped_column(String(300))
    #: The HTTP status a webhook endpoint answered.
    response_status: Mapped[int | None] = mapped_column(SmallInteger)
    duration_ms: Mapped[int | None]
    # The clock, not now(): attempts recorded in one transaction keep their order.
    attempted_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, server_default=func.now()
    )

    delivery: Mapped[Delivery] = relationship(lazy="joined")

    __table_args__ = (Index("ix_delivery_attempts_attempted_at_id", "attempted_at", "id"),)
