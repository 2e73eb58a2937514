"""Pooled connections are checked only after they sat idle (common.db.ping_when_idle,
docs/decisions/0150), against the real PostgreSQL: a connection used a moment ago goes
straight back to work, and one whose backend died while idle is replaced before use."""

from __future__ import annotations

import time

from sqlalchemy import NullPool, create_engine, make_url, text

from common.config import database_url
from common.db import ping_when_idle


def _url() -> str:
    # The server's maintenance database: any role may connect, nothing is written.
    return make_url(database_url("order")).set(database="postgres").render_as_string(False)


def test_only_an_idle_connection_is_checked_and_a_dead_one_is_replaced():
    engine = ping_when_idle(create_engine(_url(), pool_size=1, max_overflow=0), idle_seconds=0.5)
    pings = []
    real_ping = engine.dialect.do_ping

    def counted_ping(dbapi_connection):
        pings.append(dbapi_connection)
        return real_ping(dbapi_connection)

    engine.dialect.do_ping = counted_ping
    killer = create_engine(_url(), poolclass=NullPool)
    try:
        with engine.connect() as connection:
            backend = connection.scalar(text("SELECT pg_backend_pid()"))
        assert len(pings) == 1  # never used before: checked
        with engine.connect() as connection:
            assert connection.scalar(text("SELECT pg_backend_pid()")) == backend
        assert len(pings) == 1  # used a moment ago: trusted

        with killer.connect() as connection:
            assert connection.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})
        time.sleep(0.6)
        with engine.connect() as connection:
            replaced = connection.scalar(text("SELECT pg_backend_pid()"))
        assert replaced != backend  # the check failed, the pool opened another
        assert len(pings) >= 2
    finally:
        engine.dispose()
        killer.dispose()
