"""Opaque keyset cursors for list endpoints.

A cursor holds the sort key of the last item of a page and a fingerprint of the query
(filters and sort) it belongs to, base64url-encoded. A cursor presented with a different
query is refused rather than silently giving a wrong page.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, tuple_
from sqlalchemy.orm import InstrumentedAttribute, Session

from common.errors import InvalidParameter

DEFAULT_LIMIT = 20
MAX_LIMIT = 100


def query_fingerprint(query: dict[str, Any]) -> str:
    canonical = json.dumps(query, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def encode_cursor(position: list[Any], query: dict[str, Any]) -> str:
    raw = json.dumps({"p": position, "q": query_fingerprint(query)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, query: dict[str, Any], arity: int) -> list[Any]:
    """The position stored in ``cursor``; :class:`InvalidParameter` if it is not ours,
    does not belong to ``query`` or does not hold ``arity`` values."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        decoded = json.loads(base64.urlsafe_b64decode(padded.encode()))
        position, fingerprint = decoded["p"], decoded["q"]
    except (ValueError, TypeError, KeyError, binascii.Error, UnicodeError):
        raise InvalidParameter("The cursor is not valid.", {"parameter": "cursor"}) from None
    if fingerprint != query_fingerprint(query):
        raise InvalidParameter(
            "The cursor belongs to a different query; start again without a cursor.",
            {"parameter": "cursor"},
        )
    if not isinstance(position, list) or len(position) != arity:
        raise InvalidParameter("The cursor is not valid.", {"parameter": "cursor"})
    return position


def cursor_id(raw: Any) -> uuid.UUID:
    """The id part of a cursor position."""
    try:
        return uuid.UUID(str(raw))
    except ValueError:
        raise InvalidParameter("The cursor is not valid.", {"parameter": "cursor"}) from None


def validate_limit(limit: int | None) -> int:
    if limit is None:
        return DEFAULT_LIMIT
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidParameter(f"limit must be between 1 and {MAX_LIMIT}.", {"parameter": "limit"})
    return limit


def page(items: list[Any], next_cursor: str | None) -> dict[str, Any]:
    return {"items": items, "next_cursor": next_cursor}


@dataclass(frozen=True)
class Filter:
    """One optional filter of a listing: the condition a given value puts on the query,
    the values it may take (``None``: any), and how a given value is normalised first
    (the normalised value is what the condition and the cursor see)."""

    condition: Callable[[Any], ColumnElement[bool]]
    allowed: Collection[str] | None = None
    normalize: Callable[[Any], Any] | None = None


def filtered(
    query: Select, given: dict[str, Any], filters: dict[str, Filter]
) -> tuple[Select, dict[str, Any]]:
    """``query`` narrowed by each filter given a value (``None`` means not given), and the
    filters applied, normalised: what a cursor must be bound to (see :func:`newest_first`).
    A value outside a filter's allowed ones is a 400 naming the parameter."""
    applied: dict[str, Any] = {}
    for name, value in given.items():
        if value is None:
            continue
        rule = filters[name]
        if rule.allowed is not None and value not in rule.allowed:
            raise InvalidParameter(
                f"{name}: {value!r} is not one of {', '.join(rule.allowed)}.",
                {"parameter": name},
            )
        applied[name] = rule.normalize(value) if rule.normalize else value
        query = query.where(rule.condition(applied[name]))
    return query, applied


def newest_first(
    session: Session,
    query: Select,
    time_column: InstrumentedAttribute,
    id_column: InstrumentedAttribute,
    *,
    filters: dict[str, Any],
    cursor: str | None,
    limit: int | None,
    to_dict: Callable[[Any], dict[str, Any]],
) -> dict[str, Any]:
    """A page of ``query``'s rows ordered by ``(time_column, id_column)`` descending, the
    usual order for histories (audit entries, accounts, orders)."""
    limit = validate_limit(limit)
    if cursor:
        raw_time, raw_id = decode_cursor(cursor, filters, arity=2)
        try:
            after = datetime.fromisoformat(raw_time)
        except (TypeError, ValueError):
            raise InvalidParameter("The cursor is not valid.", {"parameter": "cursor"}) from None
        query = query.where(tuple_(time_column, id_column) < (after, cursor_id(raw_id)))
    rows = session.scalars(
        query.order_by(time_column.desc(), id_column.desc()).limit(limit + 1)
    ).all()
    items = rows[:limit]
    next_cursor = None
    if len(rows) > limit:
        last = items[-1]
        next_cursor = encode_cursor(
            [getattr(last, time_column.key).isoformat(), str(getattr(last, id_column.key))],
            filters,
        )
    return page([to_dict(row) for row in items], next_cursor)
