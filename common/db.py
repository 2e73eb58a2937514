"""The database dependency and column conventions every service's models share."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from nameko_sqlalchemy import Database
from sqlalchemy import Connection, DateTime, func, text
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from common.errors import InvalidInput

# A worker holds at most one connection at a time (sessions commit before any remote
# call), so nameko's 10 workers need at most 10: five kept open, five more opened for a
# burst and closed after. Seven services, their relays and tools then stay far inside
# PostgreSQL's default of 100 connections on one small machine (docs/decisions/0083).
# Pre-ping so a restarted PostgreSQL costs one failed check, not a failed request.
ENGINE_OPTIONS = {"pool_pre_ping": True, "pool_size": 5, "max_overflow": 5}


def database(base: type[DeclarativeBase]) -> Database:
    """The nameko dependency that gives each worker a session on the service's database."""
    return Database(base, engine_options=ENGINE_OPTIONS)


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> uuid.UUID:
    return uuid.uuid4()


def isoformat(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC with a ``Z``, the one timestamp format on the wire."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


class Timestamps:
    """``created_at``/``updated_at`` columns, maintained by the database clock."""

    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


def parse_id(raw: object, field: str = "id") -> uuid.UUID:
    """A UUID from the wire, or :class:`InvalidInput` naming the field."""
    try:
        return uuid.UUID(str(raw))
    except ValueError:
        raise InvalidInput(f"{field}: {raw!r} is not a UUID.", {"field": field}) from None


def check_database(session: Session) -> None:
    """Raises if the database cannot answer a trivial query (for readiness pings)."""
    session.execute(text("SELECT 1"))


def analyze(connection: Connection | Session, *tables: str) -> None:
    """``ANALYZE`` the tables (all of the database's when none is named): after a bulk
    load, so the planner knows what is there before autovacuum gets round to it (a
    freshly seeded million-row table otherwise gets generic guesses: a 1,000-row page
    took 1.4 s instead of 0.4 s; docs/decisions/0092)."""
    if not tables:
        connection.execute(text("ANALYZE"))
    for table in tables:
        connection.execute(text(f"ANALYZE {table}"))
