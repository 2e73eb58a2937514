"""A test-only nameko service with one reliable event handler (common/consumers.py).

Its database says how the handler behaves: a row in ``breakage`` breaks it (it raises
until the row is deleted), an event whose data says ``"kind": "poison"`` can never be
handled, ``"kind": "transient"`` always times out in the database (a transient error,
retried before parking). Every attempt is counted in ``attempts`` (committed on its
own) and the handler's effect, one ``effects`` row, is written once per event id.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import BigInteger, Identity, String, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from common.consumers import HandledEvent, handle_once, reliable_event_handler
from common.db import database
from common.deadletters import DeadLetterAdmin
from common.errors import InvalidInput
from common.rpc import rpc

SOURCE, EVENT_TYPE = "probe_source", "thing.happened"


class Base(DeclarativeBase):
    pass


class ProbeHandledEvent(HandledEvent, Base):
    pass


class Effect(Base):
    __tablename__ = "effects"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    event_id: Mapped[uuid.UUID]


class Attempt(Base):
    __tablename__ = "attempts"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(100))


class Breakage(Base):
    __tablename__ = "breakage"

    reason: Mapped[str] = mapped_column(String(100), primary_key=True)


class DeadLetterProbe(DeadLetterAdmin):
    name = "dead_letter_probe"

    db = database(Base)

    @rpc
    def ping(self) -> str:
        return "ok"

    @reliable_event_handler(SOURCE, EVENT_TYPE, retry_delays=(0.1, 0.2))
    def handle(self, envelope: dict[str, Any]) -> None:
        with self.db.get_session() as session:
            session.add(Attempt(event_id=str(envelope["id"])))
        kind = envelope["data"].get("kind")
        if kind == "poison":
            raise InvalidInput("this event can never be handled", {"field": "kind"})
        with self.db.get_session() as session:
            if kind == "transient":
                session.execute(text("SET LOCAL statement_timeout = 1"))
                session.execute(text("SELECT pg_sleep(1)"))
            broken = session.scalar(text("SELECT reason FROM breakage LIMIT 1"))
            if broken:
                raise RuntimeError(f"handler broken: {broken}")
            handle_once(
                session,
                ProbeHandledEvent,
                envelope,
                "dead_letter_probe.handle",
                lambda: session.add(Effect(event_id=uuid.UUID(envelope["id"]))),
            )
