"""Services validate RPC payloads against the spec's component schemas."""

import pytest

from common import schemas
from common.errors import InvalidInput


def test_a_valid_payload_passes_through():
    payload = {"slug": "poetry", "name": "Poetry"}
    assert schemas.validate("CategoryCreate", payload) is payload


def test_violations_name_the_field():
    with pytest.raises(InvalidInput) as refused:
        schemas.validate(
            "ProductCreate",
            {
                "isbn13": "9780262033848",
                "title": "T",
                "authors": ["A"],
                "price": {"amount": 0, "currency": "EUR"},
            },
        )
    assert refused.value.extensions == {"field": "price.amount"}
    assert refused.value.detail.startswith("price.amount: ")


def test_refusals_never_repeat_a_password():
    secret = "hunter2"
    with pytest.raises(InvalidInput) as refused:
        schemas.validate(
            "Registration", {"email": "a@example.com", "password": secret, "accept_terms": True}
        )
    assert refused.value.extensions == {"field": "password"}
    assert "minLength 10" in refused.value.detail
    assert secret not in refused.value.detail
