"""Card-number rules: the Luhn checksum and the brand a number's prefix (IIN) names.

Plain functions, no I/O. Used by the mock provider, which accepts raw test card numbers
(a real provider only ever sees tokens: card numbers never reach our servers in
production).
"""

from __future__ import annotations

import re

# ISO/IEC 7812 primary account numbers are 12 to 19 digits; real brands use 14 (Diners),
# 15 (Amex) and 16 (most). Spaces and dashes are how people type them, so they are allowed.
_CARD_NUMBER = re.compile(r"[0-9][0-9 -]{10,24}[0-9]")
MIN_DIGITS, MAX_DIGITS = 12, 19

# (prefix range low, high, brand), checked in order on the leading digits.
_BRANDS: tuple[tuple[int, int, str], ...] = (
    (34, 34, "amex"),
    (37, 37, "amex"),
    (300, 305, "diners"),
    (36, 36, "diners"),
    (38, 39, "diners"),
    (3528, 3589, "jcb"),
    (2221, 2720, "mastercard"),
    (51, 55, "mastercard"),
    (6011, 6011, "discover"),
    (644, 649, "discover"),
    (65, 65, "discover"),
    (62, 62, "unionpay"),
    (4, 4, "visa"),
)


def looks_like_card_number(value: str) -> bool:
    return bool(_CARD_NUMBER.fullmatch(value))


def digits_of(value: str) -> str:
    return re.sub(r"[ -]", "", value)


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) checksum every card number carries in its last digit."""
    if not digits.isdigit():
        return False
    total = 0
    for position, char in enumerate(reversed(digits)):
        digit = int(char)
        if position % 2 == 1:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def valid_card_number(digits: str) -> bool:
    return MIN_DIGITS <= len(digits) <= MAX_DIGITS and luhn_valid(digits)


def brand_of(digits: str) -> str:
    """The card brand a number's leading digits name, or ``unknown``."""
    for low, high, brand in _BRANDS:
        width = len(str(low))
        if len(digits) >= width and low <= int(digits[:width]) <= high:
            return brand
    return "unknown"
