"""Each service's workers' pool is sized by its config (common/db.py, decision 0096)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from common.config import SERVICE_PACKAGES, service_config
from common.db import ServiceDatabase
from svc_catalog.models import Base

URL = "postgresql+psycopg2://bookstore:bookstore@127.0.0.1:5432/bookstore_catalog"


def _pool(config: dict) -> tuple[int, int]:
    database = ServiceDatabase(Base)
    database.container = SimpleNamespace(
        service_name="catalog", config={"DB_URIS": {"catalog:Base": URL}, **config}
    )
    database.setup()  # creates the engine; connects to nothing yet
    pool = database.engine.pool
    return pool.size(), pool._max_overflow


def test_the_pool_follows_the_config():
    assert _pool({"max_workers": 10, "DB_POOL_SIZE": 10, "DB_MAX_OVERFLOW": 0}) == (10, 0)
    assert _pool({"max_workers": 20, "DB_POOL_SIZE": 4, "DB_MAX_OVERFLOW": 2}) == (4, 2)
    # Unset: one connection per worker.
    assert _pool({"max_workers": 7}) == (7, 0)


def test_a_pool_smaller_than_the_workers_is_reported(caplog):
    with caplog.at_level("WARNING"):
        _pool({"max_workers": 10, "DB_POOL_SIZE": 3})
    assert "3 database connections for 10 workers" in caplog.text


@pytest.mark.parametrize("service", sorted(SERVICE_PACKAGES))
def test_every_service_sets_its_pool_explicitly(service):
    config = service_config(service)
    assert int(config["DB_POOL_SIZE"]) + int(config["DB_MAX_OVERFLOW"]) >= int(
        config["max_workers"]
    )
