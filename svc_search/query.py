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

from common.books import BOOK_FILTERS, check_book_filters, isbn13_in
from common.errors import InvalidParameter
from common.pagination import decode_cursor, encode_cursor, validate_limit

#: Longer queries are cut (not refused): a pasted paragraph still finds something.
MAX_QUERY_CHARS = 200
MAX_QUERY_WORDS = 16
SORTS = ("relevance", "price", "-price", "newest", "rating")
FILTERS = BOOK_FILTERS
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
    checked = check_book_filters(filters, FILTERS)
    query = SearchQuery(
        text=text,
        filters=checked,
        sort=sort,
        limit=limit,
        after=None,
        with_facets=not cursor,
        isbn13=isbn13_in(text),
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
