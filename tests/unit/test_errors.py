"""Typed errors must arrive at the caller as the same class, with their details intact."""

import pytest
from nameko.exceptions import RemoteError, deserialize, serialize

from common import errors


@pytest.mark.parametrize(
    "error_class",
    [
        errors.NotFound,
        errors.Conflict,
        errors.InvalidInput,
        errors.InvalidParameter,
        errors.Unauthenticated,
        errors.Forbidden,
        errors.PreconditionFailed,
        errors.IdempotencyKeyReused,
    ],
)
def test_error_survives_nameko_serialisation(error_class):
    sent = error_class("Out of stock.", {"short": [{"sku": "b1", "available": 3}], "retry": False})
    received = deserialize(serialize(sent))
    assert type(received) is error_class
    assert received.detail == "Out of stock."
    # nameko stringifies non-container values; numbers and booleans must survive anyway.
    assert received.extensions == {"short": [{"sku": "b1", "available": 3}], "retry": False}
    assert str(received) == "Out of stock."


def test_unregistered_errors_stay_remote_errors():
    received = deserialize(serialize(ValueError("boom")))
    assert isinstance(received, RemoteError)
