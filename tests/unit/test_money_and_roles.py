import iso4217
import pytest

from common.errors import InvalidInput
from common.money import FUNDS_CODES, MINOR_UNIT_DIGITS, digits, money, validate_currency
from svc_auth.roles import ADMIN, CUSTOMER, scopes_for


def test_known_currencies_and_their_minor_units():
    assert validate_currency("EUR") == "EUR"
    assert MINOR_UNIT_DIGITS["JPY"] == 0
    assert MINOR_UNIT_DIGITS["KWD"] == 3
    assert money(1299, "EUR") == {"amount": 1299, "currency": "EUR"}


def test_currencies_follow_the_published_table():
    # Read from ISO 4217 list one, not kept by hand: withdrawn codes are gone (the lev
    # when Bulgaria joined the euro, the Antillean guilder) and their successors are in.
    assert iso4217.__published__.year >= 2026
    assert "BGN" not in MINOR_UNIT_DIGITS
    assert "ANG" not in MINOR_UNIT_DIGITS
    assert validate_currency("XCG") == "XCG"
    assert digits("UYW") == 4
    assert digits("not-a-code") == 2


def test_funds_codes_are_units_of_account_not_currencies():
    assert {"CHE", "CHW", "USN", "UYI", "BOV", "CLF", "COU", "MXV"} <= FUNDS_CODES
    for code in FUNDS_CODES:
        with pytest.raises(InvalidInput):
            validate_currency(code)


@pytest.mark.parametrize("code", ["XYZ", "eur", "EURO", "XAU", "XTS", "XDR"])
def test_unknown_currency_is_refused(code):
    with pytest.raises(InvalidInput):
        validate_currency(code, "price.currency")


def test_scopes_follow_roles():
    assert "admin:catalog" not in scopes_for([CUSTOMER])
    assert "admin:catalog" in scopes_for([CUSTOMER, ADMIN])
    assert scopes_for([]) == []
    assert scopes_for(["unknown-role"]) == []
