"""The database dependency and column conventions every service's models share."""

from __future__ import annotations

import logging
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from nameko_sqlalchemy import Database
from sqlalchemy import Connection, DateTime, Engine, create_engine, func, text
from sqlalchemy import event as sqlalchemy_event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from common import tracing
from common.errors import InvalidInput

log = logging.getLogger(__name__)

#: nameko config keys (ServiceSettings.nameko_config sets them from
#: ``<SERVICE>_DB_POOL_SIZE`` / ``<SERVICE>_DB_MAX_OVERFLOW``): the connections the
#: workers' pool keeps, and how many more it may open in a burst. The connection budget
#: they add up to: README, "PostgreSQL connections"; docs/decisions/0096.
POOL_SIZE_KEY = "DB_POOL_SIZE"
MAX_OVERFLOW_KEY = "DB_MAX_OVERFLOW"
#: A worker waits this long for a free connection before failing, rather than SQLAlchemy's
#: 30 s: past RPC callers' deadlines (5 s) waiting only ties the worker up.
POOL_TIMEOUT_SECONDS = 10
ENGINE_OPTIONS = {"pool_timeout": POOL_TIMEOUT_SECONDS}
#: A pooled connection idle for longer than this is checked before use (see
#: :func:`ping_when_idle`); one used more recently is trusted.
PING_AFTER_IDLE_SECONDS = 1.0


def ping_when_idle(engine: Engine, idle_seconds: float = PING_AFTER_IDLE_SECONDS) -> Engine:
    """Checks a pooled connection with a round trip before use, as ``pool_pre_ping``
    does, but only when it has sat idle for ``idle_seconds``: a restarted PostgreSQL (or
    PgBouncer) then still costs one failed check, not a failed request, while a busy
    service does not pay a round trip per session (the pings were one query in three of
    a checkout; docs/decisions/0150). A connection dropped within the last second shows
    as a failed statement: transient for reliable consumers, which retry it."""

    @sqlalchemy_event.listens_for(engine, "checkin")
    def _checked_in(dbapi_connection: Any, record: Any) -> None:
        record.info["checked_in_at"] = time.monotonic()

    @sqlalchemy_event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        checked_in_at = record.info.get("checked_in_at")
        if checked_in_at is not None and time.monotonic() - checked_in_at < idle_seconds:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as error:
            if engine.dialect.is_disconnect(error, dbapi_connection, None):
                # The pool drops this connection and checks out (or opens) another.
                raise DisconnectionError(str(error)) from error
            raise

    return engine


def create_pinged_engine(url: str, **options: Any) -> Engine:
    """``create_engine`` with :func:`ping_when_idle` (relays' and senders' own pools)."""
    return ping_when_idle(create_engine(url, **options))


class ServiceDatabase(Database):
    """nameko-sqlalchemy's ``Database`` with its pool sized by the service's config. One
    connection per concurrent worker (``max_workers``) is the most the workers can use at
    once; a smaller pool makes workers wait for connections, which is logged at start."""

    def setup(self) -> None:
        config = self.container.config
        workers = int(config.get("max_workers", 10))
        pool_size = int(config.get(POOL_SIZE_KEY) or workers)
        max_overflow = int(config.get(MAX_OVERFLOW_KEY) or 0)
        if pool_size + max_overflow < workers:
            log.warning(
                "%s: %d database connections for %d workers: workers will wait for one",
                self.container.service_name,
                pool_size + max_overflow,
                workers,
            )
        self.engine_options = {
            **ENGINE_OPTIONS,
            "pool_size": pool_size,
            "max_overflow": max_overflow,
        }
        super().setup()
        ping_when_idle(self.engine)
        # Setup order between dependencies is not defined: configuring here too (once per
        # process) means the engine gets its statement spans whichever comes first.
        tracing.configure(self.container.service_name)
        tracing.trace_engine(self.engine)


def database(base: type[DeclarativeBase]) -> Database:
    """The nameko dependency that gives each worker a session on the service's database."""
    return ServiceDatabase(base)


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
    """``ANALYZE`` the tables (all of the service's own when none is named): after a bulk
    load, so the planner knows what is there before autovacuum gets round to it (a
    freshly seeded million-row table otherwise gets generic guesses: a 1,000-row page
    took 1.4 s instead of 0.4 s; docs/decisions/0092). A bare ``ANALYZE`` would also try
    the shared system catalogs, which only a superuser may, and log a warning for each."""
    if not tables:
        tables = tuple(
            connection.execute(
                text("SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = 'public'")
            ).scalars()
        )
    if tables:
        connection.execute(text(f"ANALYZE {', '.join(tables)}"))
