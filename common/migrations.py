"""Alembic, the same way for every service.

Each service keeps its revisions in ``<package>/migrations``; its ``env.py`` is two lines
that call :func:`run_env`. :func:`upgrade` is what tools call (``bookstore migrate``, the
test harness): it points alembic at the service's folder and database without an ini file.
"""

from __future__ import annotations

from alembic import command, context
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import MetaData, create_engine, pool

from common.config import REPO_ROOT, SERVICE_PACKAGES, database_url
from common.db import analyze


def alembic_config(service: str, url: str | None = None) -> Config:
    config = Config()
    config.set_main_option(
        "script_location", str(REPO_ROOT / SERVICE_PACKAGES[service] / "migrations")
    )
    # ConfigParser interpolation would choke on a "%" in a URL-encoded password.
    config.set_main_option("sqlalchemy.url", (url or database_url(service)).replace("%", "%%"))
    return config


def upgrade(service: str, url: str | None = None, revision: str = "head") -> bool:
    """Applies the migrations up to ``revision``; returns True if any was applied. After
    applied migrations the whole database is analysed: a migration that backfills a
    column or fills a table leaves statistics behind it (docs/decisions/0092)."""
    url = url or database_url(service)
    before = current_revisions(url)
    command.upgrade(alembic_config(service, url), revision)
    if current_revisions(url) == before:
        return False
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.begin() as connection:
            analyze(connection)
    finally:
        engine.dispose()
    return True


def current_revisions(url: str) -> tuple[str, ...]:
    """The revisions the database is at (empty before the first migration)."""
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            return tuple(sorted(MigrationContext.configure(connection).get_current_heads()))
    finally:
        engine.dispose()


def run_env(metadata: MetaData) -> None:
    """The body of every service's ``migrations/env.py``."""
    url = context.config.get_main_option("sqlalchemy.url")
    if context.is_offline_mode():
        context.configure(url=url, target_metadata=metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=metadata)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()
