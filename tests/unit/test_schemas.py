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


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ("a\x00b", "(value)"),
        ({"title": "ok", "attributes": {"publisher": "x\x00"}}, "attributes.publisher"),
        ({"authors": ["fine", "bad\x00"]}, "authors.1"),
        ({"key\x00": "value"}, "key\x00"),
        ({"title": "fine", "n": 1, "list": [1, None]}, None),
    ],
)
def test_find_nul(value, path):
    assert schemas.find_nul(value) == path


def test_services_refuse_nul_characters():
    with pytest.raises(InvalidInput) as refused:
        schemas.validate("CategoryCreate", {"slug": "ok", "name": "Po\x00etry"})
    assert refused.value.extensions == {"field": "name"}
