import pytest

from common.errors import InvalidInput
from common.money import MINOR_UNIT_DIGITS, money, validate_currency
from svc_auth.roles import ADMIN, CUSTOMER, scopes_for


def test_known_currencies_and_their_minor_units():
    assert validate_currency("EUR") == "EUR"
    assert MINOR_UNIT_DIGITS["JPY"] == 0
    assert MINOR_UNIT_DIGITS["KWD"] == 3
    assert money(1299, "EUR") == {"amount": 1299, "currency": "EUR"}


@pytest.mark.parametrize("code", ["XYZ", "eur", "EURO", "XAU"])
def test_unknown_currency_is_refused(code):
    with pytest.raises(InvalidInput):
        validate_currency(code, "price.currency")


def test_scopes_follow_roles():
    assert "admin:catalog" not in scopes_for([CUSTOMER])
    assert "admin:catalog" in scopes_for([CUSTOMER, ADMIN])
    assert scopes_for([]) == []
    assert scopes_for(["unknown-role"]) == []
