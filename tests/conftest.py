"""Fixtures shared by the whole suite.

Unit tests need nothing running. ``db_*`` fixtures give a session on a real, migrated
test database. ``platform``/``api`` start the real services and gateway once per run
(tests/harness.py) and give each test clean data.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.orm import Session

from tests import harness
from tests.support import Api


@pytest.fixture(scope="session")
def platform() -> Iterator[harness.Platform]:
    running = harness.start_platform()
    try:
        yield running
    finally:
        harness.stop_platform(running)


@pytest.fixture
def api(platform: harness.Platform) -> Api:
    """An HTTP client for the gateway, on data reset to the initial state."""
    platform.reset_data()
    return Api(platform)


@pytest.fixture
def catalog_db(platform: harness.Platform) -> Iterator[Session]:
    """A session on the catalog's test database (the one the running service uses)."""
    platform.reset_data()
    with Session(platform.engine("catalog")) as session:
        yield session


@pytest.fixture
def auth_db(platform: harness.Platform) -> Iterator[Session]:
    platform.reset_data()
    with Session(platform.engine("auth")) as session:
        yield session
