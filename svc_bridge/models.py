"""svc_bridge's one table, in its own database (``bookstore_bridge``): what became of each
event it mirrored, so an operator can answer "did event X reach EventBridge, and under
which id?" without searching the bus."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import DateTime, SmallInteger, String, Text, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class MirroredEvent(Base):
    __tablename__ = "mirrored_events"

    event_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    #: The EventBridge ``source`` (``bookstore.<service>``) and ``detail-type``.
    source: Mapped[str] = mapped_column(String(100))
    event_type: Mapped[str] = mapped_column(String(100))
    #: ``accepted`` (EventBridge has it) or ``parked`` (on the bridge's dead-letter queue).
    status: Mapped[str] = mapped_column(String(20))
    eventbridge_id: Mapped[str | None] = mapped_column(String(100))
    reason: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(SmallInteger)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), index=True
    )
