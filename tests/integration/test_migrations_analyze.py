"""Applied migrations leave statistics behind them (common/migrations.py,
docs/decisions/0092); a database of its own, made from nothing."""

from __future__ import annotations

from sqlalchemy import create_engine, text

from common import migrations
from ops import databases
from tests.harness import NAMESPACE
from tests.harness import test_database_url as database_url_for_tests
from tests.support import eventually


def test_an_upgrade_that_applies_migrations_analyses_the_database():
    url = database_url_for_tests("payment", f"{NAMESPACE}_analyze")
    databases.create_database(url, recreate=True)
    engine = create_engine(url)
    try:
        assert migrations.upgrade("payment", url) is True

        def analysed() -> None:
            with engine.connect() as connection:
                never = connection.scalars(
                    text(
                        "SELECT relname FROM pg_stat_user_tables "
                        "WHERE last_analyze IS NULL AND relname <> 'alembic_version'"
                    )
                ).all()
            assert never == []

        eventually(analysed, timeout=10)
        assert migrations.upgrade("payment", url) is False, "nothing left to apply"
    finally:
        engine.dispose()
        databases.create_database(url, recreate=True)
