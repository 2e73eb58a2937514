"""Money on the wire: integer minor units plus an ISO 4217 currency code, never floats."""

from __future__ import annotations

from typing import Any

import iso4217

from common.errors import InvalidInput


def _iso4217_minor_units() -> tuple[dict[str, int], frozenset[str]]:
    """The currencies a price can be in, read from ISO 4217's own list one (the `iso4217`
    package ships the maintenance agency's table.xml; decision 0002 says why a package
    and not a list kept by hand). Funds codes (``IsFund``) are units of account, not money
    a shop takes; codes without a minor unit ("N.A.": gold, SDRs, the test code) are not
    currencies anyone pays a book in."""
    digits: dict[str, int] = {}
    funds: set[str] = set()
    for entry in iso4217.raw_xml.findall("CcyTbl/CcyNtry"):
        code, name = entry.find("Ccy"), entry.find("CcyNm")
        minor_units = entry.find("CcyMnrUnts")
        if code is None or name is None or minor_units is None:
            continue  # a country without a universal currency (Antarctica)
        if name.get("IsFund") == "true":
            funds.add(code.text)
        elif minor_units.text.isdigit():
            digits[code.text] = int(minor_units.text)
    return digits, frozenset(funds)


#: Active ISO 4217 currency codes and the number of digits in their minor unit.
#: FUNDS_CODES are the codes the table marks as funds, refused as currencies.
MINOR_UNIT_DIGITS, FUNDS_CODES = _iso4217_minor_units()


def digits(currency: str) -> int:
    """How many decimal digits the minor unit of ``currency`` has (2 if unknown)."""
    return MINOR_UNIT_DIGITS.get(currency, 2)


#: The largest amount the API accepts (one million in a two-decimal currency): far above
#: any book, and far below where integer overflow could matter.
MAX_AMOUNT = 100_000_000


def validate_currency(code: str, field: str = "currency") -> str:
    if code not in MINOR_UNIT_DIGITS:
        raise InvalidInput(f"{code!r} is not an ISO 4217 currency code.", {"field": field})
    return code


def money(amount: int, currency: str) -> dict[str, Any]:
    return {"amount": amount, "currency": currency}
