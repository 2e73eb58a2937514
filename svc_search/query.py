"""What a search asks for, checked once for every backend.

:func:`parse_search` turns the RPC arguments into a :class:`SearchQuery` or raises
:class:`InvalidParameter` (a 400), so a backend only ever sees sane values: the text is
bounded and free of NUL characters, filters are known and typed, the sort is one we
offer. The text itself is never parsed as a query language here or in a backend (the
PostgreSQL backend hands it to ``websearch_to_tsquery``, Elasticsearch to
``simple_query_string``, both of which accept any string), so quotes, operators and
unbalanced brackets can change what matches but can never fail the request.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from common.errors import InvalidParameter
from common.money import MAX_AMOUNT
from common.pagination import decode_cursor, encode_cursor, validate_limit
from svc_catalog.domain import author_key

#: Longer queries are cut (not refused): a pasted paragraph still finds something.
MAX_QUERY_CHARS = 200
MAX_QUERY_WORDS = 16
SORTS = ("relevance", "price", "-price", "newest", "rating")
FILTERS = frozenset({"category_id", "author", "price_min", "price_max", "rating_min", "in_stock"})
#: Price facet buckets in minor units: [from, to) with ``None`` open-ended.
PRICE_BUCKETS: tuple[tuple[int, int | None], ...] = (
    (0, 1000),
    (1000, 2000),
    (2000, 3000),
    (3000, 5000),
    (5000, None),
)
#: Rating facet: books rated at least this on average ("4 stars and up").
RATING_STEPS = (4, 3, 2, 1)
AUTHOR_FACET_SIZE = 10
SUGGEST_LIMIT_MAX = 20

_ISBN_CHARS = re.compile(r"^[0-9Xx][0-9Xx \-]{8,20}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class SearchQuery:
    text: str
    filters: dict[str, Any]
    sort: str
    limit: int
    #: The keyset position after which this page starts (decoded cursor), or None.
    after: list[Any] | None
    #: Facet counts are computed for the first page only (they do not change by page).
    with_facets: bool
    #: The normalised ISBN-13 when the text is an ISBN (matched exactly, not by words).
    isbn13: str | None

    def identity(self) -> dict[str, Any]:
        """What a cursor is bound to: the same text, filters and sort."""
        return {"q": self.text, "filters": self.filters, "sort": self.sort}

    def cursor_for(self, position: list[Any]) -> str:
        return encode_cursor(position, self.identity())

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def clean_text(raw: str | None) -> str:
    """The query text as searched: NFC, control characters dropped, whitespace collapsed,
    at most :data:`MAX_QUERY_CHARS` characters and :data:`MAX_QUERY_WORDS` words."""
    if raw is None:
        return ""
    if not isinstance(raw, str):
        raise InvalidParameter("q: must be a string.", {"parameter": "q"})
    text = _CONTROL.sub(" ", unicodedata.normalize("NFC", raw))
    words = text.split()[:MAX_QUERY_WORDS]
    return " ".join(words)[:MAX_QUERY_CHARS].strip()


def isbn13_of(text: str) -> str | None:
    """The ISBN-13 the text spells (ISBN-10s are converted), or None."""
    if not _ISBN_CHARS.match(text):
        return None
    digits = re.sub(r"[ \-]", "", text).upper()
    if len(digits) == 10 and digits[:9].isdigit():
        body = "978" + digits[:9]
    elif len(digits) == 13 and digits.isdigit() and digits.startswith(("978", "979")):
        body = digits[:12]
    else:
        return None
    total = sum(int(digit) * (3 if index % 2 else 1) for index, digit in enumerate(body))
    return body + str((10 - total % 10) % 10)


def check_filters(filters: dict[str, Any] | None) -> dict[str, Any]:
    filters = {name: value for name, value in (filters or {}).items() if value is not None}
    unknown = set(filters) - FILTERS
    if unknown:
        raise InvalidParameter(
            f"Unknown filter(s): {', '.join(sorted(unknown))}.", {"filters": sorted(unknown)}
        )
    checked: dict[str, Any] = {}
    for bound in ("price_min", "price_max"):
        if bound in filters:
            value = filters[bound]
            if type(value) is not int or not 0 <= value <= MAX_AMOUNT:
                raise InvalidParameter(
                    f"{bound}: must be a whole number from 0 to {MAX_AMOUNT}.",
                    {"parameter": bound},
                )
            checked[bound] = value
    if checked.get("price_min", 0) > checked.get("price_max", MAX_AMOUNT):
        raise InvalidParameter("price_min is above price_max.", {"parameter": "price_min"})
    if "rating_min" in filters:
        value = filters["rating_min"]
        if isinstance(value, bool) or not isinstance(value, int | float) or not 1 <= value <= 5:
            raise InvalidParameter("rating_min: must be from 1 to 5.", {"parameter": "rating_min"})
        checked["rating_min"] = float(value)
    if "in_stock" in filters:
        if not isinstance(filters["in_stock"], bool):
            raise InvalidParameter("in_stock: must be true or false.", {"parameter": "in_stock"})
        checked["in_stock"] = filters["in_stock"]
    if "category_id" in filters:
        try:
            checked["category_id"] = str(uuid.UUID(str(filters["category_id"])))
        except ValueError:
            raise InvalidParameter("category: not a UUID.", {"parameter": "category"}) from None
    if "author" in filters:
        author = filters["author"]
        if not isinstance(author, str) or not author.strip() or "\x00" in author:
            raise InvalidParameter("author: must be a name.", {"parameter": "author"})
        checked["author"] = author_key(author)[:200]
    return checked


def parse_search(
    q: str | None,
    filters: dict[str, Any] | None = None,
    sort: str | None = None,
    cursor: str | None = None,
    limit: int | None = None,
) -> SearchQuery:
    text = clean_text(q)
    sort = sort or ("relevance" if text else "newest")
    if sort not in SORTS:
        raise InvalidParameter(f"sort: must be one of {', '.join(SORTS)}.", {"parameter": "sort"})
    limit = validate_limit(limit)
    checked = check_filters(filters)
    query = SearchQuery(
        text=text,
        filters=checked,
        sort=sort,
        limit=limit,
        after=None,
        with_facets=not cursor,
        isbn13=isbn13_of(text),
    )
    if cursor:
        position = decode_cursor(cursor, query.identity(), arity=len(position_fields(sort)))
        query = SearchQuery(**{**query.as_dict(), "after": check_position(sort, position)})
    return query


def position_fields(sort: str) -> tuple[str, ...]:
    """The keyset of each sort, the product id always last (ties)."""
    return {
        "relevance": ("score", "product_id"),
        "price": ("price_amount", "product_id"),
        "-price": ("price_amount", "product_id"),
        "newest": ("created_at", "product_id"),
        "rating": ("rating_average", "rating_count", "product_id"),
    }[sort]


def check_position(sort: str, position: list[Any]) -> list[Any]:
    """A decoded cursor position, checked value by value (a cursor is client input)."""
    invalid = InvalidParameter("The cursor is not valid.", {"parameter": "cursor"})
    checked: list[Any] = []
    for name, value in zip(position_fields(sort), position, strict=True):
        if name == "product_id":
            try:
                value = str(uuid.UUID(str(value)))
            except ValueError:
                raise invalid from None
        elif name in ("price_amount", "rating_count"):
            if type(value) is not int:
                raise invalid
        elif name in ("score", "rating_average"):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise invalid
            value = float(value)
        elif name == "created_at" and not isinstance(value, str):
            raise invalid
        checked.append(value)
    return checked


def parse_suggest(prefix: str | None, limit: int | None) -> tuple[str, int]:
    text = clean_text(prefix)
    if limit is None:
        limit = 8
    if type(limit) is not int or not 1 <= limit <= SUGGEST_LIMIT_MAX:
        raise InvalidParameter(
            f"limit: must be from 1 to {SUGGEST_LIMIT_MAX}.", {"parameter": "limit"}
        )
    return text, limit


def price_bucket_key(low: int, high: int | None) -> str:
    return f"{low}-{high}" if high is not None else f"{low}-"
