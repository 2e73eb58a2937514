"""Each service's own database: created if missing, migrated to the latest revision."""

from __future__ import annotations

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from common import migrations
from common.config import database_url


def _server_url(url: str) -> str:
    """The same server and credentials, connected to the maintenance database."""
    return make_url(url).set(database="postgres").render_as_string(hide_password=False)


def create_database(url: str, *, recreate: bool = False) -> bool:
    """Creates the database ``url`` names (dropping it first if ``recreate``); returns
    True if it had to be created."""
    name = make_url(url).database
    engine = create_engine(_server_url(url), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            quoted = connection.dialect.identifier_preparer.quote(name)
            if recreate:
                connection.execute(text(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"))
            exists = connection.scalar(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
            )
            if not exists:
                connection.execute(text(f"CREATE DATABASE {quoted}"))
            return not exists
    finally:
        engine.dispose()


def prepare(service: str, url: str | None = None, *, recreate: bool = False) -> None:
    """Creates the service's database if needed and applies every migration."""
    url = url or database_url(service)
    create_database(url, recreate=recreate)
    migrations.upgrade(service, url)
