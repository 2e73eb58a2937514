"""The database dependency and column conventions every service's models share."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime

from nameko_sqlalchemy import Database
from sqlalchemy import Connection, DateTime, func, text
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from common import tracing
from common.errors import InvalidInput

log = logging.getLogger(__name__)

#: Service config keys (each service's config.yaml sets them from
#: ``<SERVICE>_DB_POOL_SIZE`` / ``<SERVICE>_DB_MAX_OVERFLOW``): the connections the
#: workers' pool keeps, and how many more it may open in a burst. The connection budget
#: they add up to: README, "PostgreSQL connections"; docs/decisions/0096.
POOL_SIZE_KEY = "DB_POOL_SIZE"
MAX_OVERFLOW_KEY = "DB_MAX_OVERFLOW"
#: A worker waits this long for a free connection before failing, rather than SQLAlchemy's
#: 30 s: past RPC callers' deadlines (5 s) waiting only ties the worker up.
POOL_TIMEOUT_SECONDS = 10
# Pre-ping so a restarted PostgreSQL (or PgBouncer) costs one failed check, not a failed
# request.
ENGINE_OPTIONS = {"pool_pre_ping": True, "pool_timeout": POOL_TIMEOUT_SECONDS}


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
