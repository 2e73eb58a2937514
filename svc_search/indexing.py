"""Keeping ``search_documents`` in step with the catalog, one event at a time.

Events arrive at least once and, with several catalog instances, not necessarily in
order (docs/decisions/0007). So: product data is written only when its ``version`` is
newer than what the row has (an old ``product.updated`` arriving late changes nothing),
a withdrawn book stays as a tombstone with its version (a late update cannot bring it
back), and availability is not taken from the event but asked of the catalog when the
event arrives (it is the current figure, whatever order reservations were announced in).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from common.books import author_key
from common.db import isoformat

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
#: Columns a document is written with (the generated ones, in_stock and search_vector,
#: are computed by PostgreSQL).
DOCUMENT_COLUMNS = (
    "product_id",
    "isbn13",
    "title",
    "authors",
    "authors_text",
    "author_keys",
    "description",
    "category_id",
    "category_path",
    "category_name",
    "price_amount",
    "currency",
    "publication_year",
    "created_at",
    "product_version",
    "available",
    "stock_version",
    "rating_average",
    "rating_count",
    "deleted",
)
# Product fields an event may change; availability and rating have their own updates.
_PRODUCT_COLUMNS = tuple(
    name
    for name in DOCUMENT_COLUMNS
    if name not in ("product_id", "available", "stock_version", "rating_average", "rating_count")
)


@dataclass(frozen=True)
class Category:
    id: str
    name: str
    parent_id: str | None


def category_path(categories: dict[str, Category], category_id: str | None) -> list[str]:
    """The category and its ancestors, nearest first (cycles and unknown parents end it)."""
    path: list[str] = []
    current = category_id
    while current and current not in path:
        path.append(current)
        category = categories.get(current)
        current = category.parent_id if category else None
    return path


def document_values(
    product: dict[str, Any],
    categories: dict[str, Category],
    *,
    available: int = 0,
    stock_version: int = 0,
    rating: dict[str, Any] | None = None,
    deleted: bool = False,
) -> dict[str, Any]:
    """A ``search_documents`` row for a product as the catalog's API shows it."""
    category_id = product.get("category_id")
    category = categories.get(category_id) if category_id else None
    rating = rating or {}
    return {
        "product_id": product["id"],
        "isbn13": product["isbn13"],
        "title": product["title"],
        "authors": list(product["authors"]),
        "authors_text": " ; ".join(product["authors"]),
        "author_keys": [author_key(name) for name in product["authors"]],
        "description": product.get("description"),
        "category_id": category_id,
        "category_path": category_path(categories, category_id),
        "category_name": category.name if category else None,
        "price_amount": product["price"]["amount"],
        "currency": product["price"]["currency"],
        "publication_year": product.get("publication_year"),
        "created_at": product["created_at"],
        "product_version": product["version"],
        "available": available,
        "stock_version": stock_version,
        "rating_average": float(rating.get("average") or 0.0),
        "rating_count": int(rating.get("count") or 0),
        "deleted": deleted,
    }


def words_of(values: dict[str, Any]) -> list[str]:
    """The lexicon words of a document: its title's and authors' words, lower case."""
    return sorted(set(_WORD.findall(f"{values['title']} {values['authors_text']}".lower())))


def upsert_product(session: Session, values: dict[str, Any]) -> bool:
    """Writes a document's product fields unless the row already has this version or a
    newer one; returns whether it wrote. Availability and rating are kept on update."""
    columns = ", ".join(DOCUMENT_COLUMNS)
    placeholders = ", ".join(_placeholder(name) for name in DOCUMENT_COLUMNS)
    updates = ", ".join(f"{name} = excluded.{name}" for name in _PRODUCT_COLUMNS)
    written = session.execute(
        text(
            f"""
            INSERT INTO search_documents ({columns}, es_dirty) VALUES ({placeholders}, true)
            ON CONFLICT (product_id) DO UPDATE SET {updates}, es_dirty = true,
                indexed_at = now()
            WHERE search_documents.product_version < excluded.product_version
            RETURNING product_id
            """
        ),
        values,
    ).first()
    if written is not None and not values["deleted"]:
        add_terms(session, words_of(values))
    return written is not None


def _placeholder(name: str) -> str:
    if name == "category_path":
        return "CAST(:category_path AS uuid[])"
    if name in ("product_id", "category_id"):
        return f"CAST(:{name} AS uuid)"
    if name == "created_at":
        return "CAST(:created_at AS timestamptz)"
    return f":{name}"


def add_terms(session: Session, words: Iterable[str]) -> None:
    words = list(words)
    if words:
        session.execute(
            text(
                "INSERT INTO search_terms (term, frequency) "
                "SELECT word, 1 FROM unnest(CAST(:words AS text[])) AS word "
                "ON CONFLICT (term) DO UPDATE SET frequency = search_terms.frequency + 1"
            ),
            {"words": words},
        )


def set_availability(session: Session, available: dict[str, tuple[int, int]]) -> int:
    """Copies available per product id, as ``(available, stock_version)`` from the
    catalog; a figure older than the one kept is ignored (events may arrive out of
    order). Returns how many documents changed."""
    if not available:
        return 0
    statement = text(
        "UPDATE search_documents SET available = :available, stock_version = :version, "
        "es_dirty = es_dirty OR available <> :available, indexed_at = now() "
        "WHERE product_id = :product_id AND stock_version <= :version"
    )
    changed = 0
    for product_id, (count, version) in sorted(available.items()):
        result = session.execute(
            statement, {"product_id": uuid.UUID(product_id), "available": count, "version": version}
        )
        changed += result.rowcount
    return changed


def set_rating(session: Session, product_id: str, average: float, count: int) -> bool:
    """A book's rating after a review. Reviews are never removed, so the count only grows:
    a late event with a smaller count is older and changes nothing."""
    result = session.execute(
        text(
            "UPDATE search_documents SET rating_average = :average, rating_count = :count, "
            "es_dirty = true, indexed_at = now() "
            "WHERE product_id = :product_id AND rating_count < :count"
        ),
        {"product_id": uuid.UUID(product_id), "average": float(average), "count": int(count)},
    )
    return result.rowcount > 0


def index_status(session: Session) -> dict[str, Any]:
    """What operators want to know about the index: size, freshness, last rebuild."""
    counts = (
        session.execute(
            text(
                "SELECT count(*) FILTER (WHERE NOT deleted) AS documents, "
                "count(*) FILTER (WHERE deleted) AS tombstones, "
                "count(*) FILTER (WHERE es_dirty AND NOT deleted) AS not_in_elasticsearch, "
                "max(indexed_at) AS last_change FROM search_documents"
            )
        )
        .mappings()
        .one()
    )
    build = (
        session.execute(
            text(
                "SELECT id, status, started_at, finished_at, documents, seconds, detail "
                "FROM index_builds ORDER BY id DESC LIMIT 1"
            )
        )
        .mappings()
        .first()
    )
    return {
        "documents": counts["documents"],
        "tombstones": counts["tombstones"],
        "not_in_elasticsearch": counts["not_in_elasticsearch"],
        "last_change": _iso(counts["last_change"]),
        "last_build": {key: _iso(value) for key, value in build.items()} if build else None,
    }


def _iso(value: Any) -> Any:
    return isoformat(value) if isinstance(value, datetime) else value
