"""Fixtures of the end-to-end tests that more than one module uses."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.support import Receiver


@pytest.fixture
def restore_signing_keys(api):
    """Rotation tests put the signing keys back as they were, so later tests (and the
    suite's cached admin token) keep the keys the gateway knows."""
    from sqlalchemy import text

    engine = api.platform.engine("auth")
    with engine.connect() as connection:
        saved = [
            dict(row._mapping) for row in connection.execute(text("SELECT * FROM signing_keys"))
        ]
    yield
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM signing_keys"))
        for row in saved:
            connection.execute(
                text(
                    "INSERT INTO signing_keys (kid, private_key_pem, public_jwk, created_at, "
                    "retired_at) VALUES (:kid, :private_key_pem, CAST(:public_jwk AS jsonb), "
                    ":created_at, :retired_at)"
                ),
                {**row, "public_jwk": json.dumps(row["public_jwk"])},
            )


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A webhook endpoint on loopback (tests/support.py, Receiver)."""
    endpoint = Receiver()
    try:
        yield endpoint
    finally:
        endpoint.close()
