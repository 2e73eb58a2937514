"""The words every service uses about books, defined once: ISBNs, author keys and the
filters a product list or a search can be narrowed by.

The catalog owns books; search keeps a copy of them and answers the same filters. Both
must agree on what an ISBN is, how an author's name compares and what a filter accepts,
or a filter that narrows a list would fail a search (or the other way round). So both
import these rules from here instead of one importing the other's internals.

``VOCABULARY_VERSION`` changes when a rule changes how stored values compare (an author
key computed differently, say): a service that stores keys (catalog's ``author_keys``,
search's index) must then recompute them, and a reindex is the way to do it.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from common.errors import InvalidInput, InvalidParameter
from common.money import MAX_AMOUNT

VOCABULARY_VERSION = 1

#: Every filter either service offers; each offers a subset (``check_book_filters``).
BOOK_FILTERS = frozenset(
    {"category_id", "author", "price_min", "price_max", "rating_min", "in_stock"}
)
#: Author keys are stored in ``String(200)`` columns.
AUTHOR_KEY_MAX_CHARS = 200

_SEPARATORS = re.compile(r"[\s-]")
_SPACES = re.compile(r"\s+")
_ISBN_CHARS = re.compile(r"^[0-9Xx][0-9Xx \-]{8,20}$")


def isbn13_check_digit(first_twelve: str) -> str:
    """The ISBN-13 check digit of its first twelve digits (weights 1, 3, 1, 3...)."""
    total = sum(int(digit) * (3 if index % 2 else 1) for index, digit in enumerate(first_twelve))
    return str((10 - total % 10) % 10)


def normalize_isbn13(raw: str) -> str:
    """The 13 digits of an ISBN-13 given with or without hyphens/spaces; checks the
    prefix (978/979) and the check digit, and says which is wrong."""
    digits = _SEPARATORS.sub("", raw)
    if len(digits) != 13 or not digits.isdigit() or not digits.startswith(("978", "979")):
        raise InvalidInput(
            f"isbn13: {raw!r} is not an ISBN-13 (13 digits starting 978 or 979).",
            {"field": "isbn13"},
        )
    if isbn13_check_digit(digits[:12]) != digits[12]:
        raise InvalidInput(f"isbn13: {raw!r} has a wrong check digit.", {"field": "isbn13"})
    return digits


def isbn13_in(text: str) -> str | None:
    """The ISBN-13 that a search text spells, or None. Lenient where a shopper is: an
    ISBN-10 is converted, and a wrong check digit is corrected rather than refused (the
    search then finds the book the other twelve digits name)."""
    if not _ISBN_CHARS.match(text):
        return None
    digits = re.sub(r"[ \-]", "", text).upper()
    if len(digits) == 10 and digits[:9].isdigit():
        body = "978" + digits[:9]
    elif len(digits) == 13 and digits.isdigit() and digits.startswith(("978", "979")):
        body = digits[:12]
    else:
        return None
    return body + isbn13_check_digit(body)


def author_key(name: str) -> str:
    """How author names compare (filters, duplicates, facets): case and spacing ignored,
    cut to the stored key's length."""
    return _SPACES.sub(" ", name).strip().casefold()[:AUTHOR_KEY_MAX_CHARS]


def check_book_filters(filters: dict[str, Any] | None, offered: frozenset[str]) -> dict[str, Any]:
    """``filters`` checked and normalised, or :class:`InvalidParameter` (a 400) naming
    the parameter. ``None`` values mean "not given". ``offered`` is the subset of
    :data:`BOOK_FILTERS` the caller answers."""
    given = {name: value for name, value in (filters or {}).items() if value is not None}
    unknown = set(given) - offered
    if unknown:
        raise InvalidParameter(
            f"Unknown filter(s): {', '.join(sorted(unknown))}.", {"filters": sorted(unknown)}
        )
    checked: dict[str, Any] = {}
    for bound in ("price_min", "price_max"):
        if bound in given:
            value = given[bound]
            if type(value) is not int or not 0 <= value <= MAX_AMOUNT:
                raise InvalidParameter(
                    f"{bound}: must be a whole number from 0 to {MAX_AMOUNT}.",
                    {"parameter": bound},
                )
            checked[bound] = value
    if checked.get("price_min", 0) > checked.get("price_max", MAX_AMOUNT):
        raise InvalidParameter("price_min is above price_max.", {"parameter": "price_min"})
    if "rating_min" in given:
        value = given["rating_min"]
        if isinstance(value, bool) or not isinstance(value, int | float) or not 1 <= value <= 5:
            raise InvalidParameter("rating_min: must be from 1 to 5.", {"parameter": "rating_min"})
        checked["rating_min"] = float(value)
    if "in_stock" in given:
        if not isinstance(given["in_stock"], bool):
            raise InvalidParameter("in_stock: must be true or false.", {"parameter": "in_stock"})
        checked["in_stock"] = given["in_stock"]
    if "category_id" in given:
        try:
            checked["category_id"] = str(uuid.UUID(str(given["category_id"])))
        except ValueError:
            raise InvalidParameter("category: not a UUID.", {"parameter": "category"}) from None
    if "author" in given:
        author = given["author"]
        if not isinstance(author, str) or not author.strip() or "\x00" in author:
            raise InvalidParameter("author: must be a name.", {"parameter": "author"})
        checked["author"] = author_key(author)
    return checked
