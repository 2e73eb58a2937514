"""Product use cases: read, list (keyset pages), create, update, withdraw.

Every change writes its ``product.*`` event to the outbox in the same transaction; the
event's data is the product as the API shows it, so consumers need not call back.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from common import schemas
from common.books import BOOK_FILTERS, author_key, check_book_filters
from common.db import isoformat, new_id, parse_id, utcnow
from common.errors import Conflict, InvalidParameter, NotFound, PreconditionFailed
from common.money import money, validate_currency
from common.pagination import cursor_id, decode_cursor, encode_cursor, page, validate_limit
from svc_catalog import domain, image_store
from svc_catalog.categories import category_and_descendants, require_category
from svc_catalog.image_objects import discard_product_images, images_of
from svc_catalog.models import Product, outbox

log = logging.getLogger(__name__)

#: Sort name -> (column, descending). Each has a matching index (models.Product).
SORTS: dict[str, tuple[Any, bool]] = {
    "title": (Product.title, False),
    "-title": (Product.title, True),
    "price": (Product.price_amount, False),
    "-price": (Product.price_amount, True),
    "created_at": (Product.created_at, False),
    "-created_at": (Product.created_at, True),
}
FILTERS = frozenset({"category_id", "author", "price_min", "price_max"}) & BOOK_FILTERS
# Fields that change with every write, whatever was written; and the images, which a
# merge patch never changes (their presigned URLs differ from one second to the next).
VERSION_FIELDS = frozenset({"version", "updated_at", "images", "image_url"})


def product_to_dict(product: Product) -> dict[str, Any]:
    images, image_url = images_of(product, image_store.current())
    return {
        "id": str(product.id),
        "isbn13": product.isbn13,
        "title": product.title,
        "authors": list(product.authors),
        "description": product.description,
        "category_id": str(product.category_id) if product.category_id else None,
        "price": money(product.price_amount, product.currency),
        "publication_year": product.publication_year,
        "dimensions_mm": list(product.dimensions_mm) if product.dimensions_mm else None,
        "attributes": dict(product.attributes or {}),
        "image_url": image_url,
        "images": images,
        "version": product.version,
        "created_at": isoformat(product.created_at),
        "updated_at": isoformat(product.updated_at),
    }


def product_fields(session: Session, book: dict[str, Any]) -> dict[str, Any]:
    """Column values for a book given as the API shows it (create or merged update),
    with every business rule checked."""
    category_id = book.get("category_id")
    if category_id is not None:
        category_id = require_category(session, category_id).id
    return {
        "isbn13": domain.normalize_isbn13(book["isbn13"]),
        "title": domain.clean_text(book["title"], "title"),
        "authors": (authors := domain.clean_authors(book["authors"])),
        "author_keys": [author_key(author) for author in authors],
        "description": book.get("description"),
        "category_id": category_id,
        "price_amount": book["price"]["amount"],
        "currency": validate_currency(book["price"]["currency"], "price.currency"),
        "publication_year": domain.check_publication_year(book.get("publication_year")),
        "dimensions_mm": book.get("dimensions_mm"),
        "attributes": book.get("attributes") or {},
    }


def get_product(session: Session, product_id: str) -> dict[str, Any]:
    return product_to_dict(live_product(session, product_id))


def create_product(session: Session, book: dict[str, Any]) -> dict[str, Any]:
    schemas.validate("ProductCreate", book)
    product = Product(id=new_id(), **product_fields(session, book))
    _flush_checking_isbn(session, product)
    created = product_to_dict(product)
    outbox.add(session, "product.created", created)
    log.info("product created", extra={"product_id": created["id"], "isbn13": product.isbn13})
    return created


def update_product(
    session: Session,
    product_id: str,
    changes: dict[str, Any],
    expected_version: int | None = None,
) -> dict[str, Any]:
    """Applies a JSON merge patch. A patch that changes nothing bumps no version and
    announces nothing."""
    schemas.validate("ProductUpdate", changes)
    product = live_product(session, product_id, for_update=True, expected_version=expected_version)
    before = product_to_dict(product)
    fields = product_fields(session, domain.merge_patch(before, changes))
    changed_columns = [name for name, value in fields.items() if getattr(product, name) != value]
    if not changed_columns:
        return before
    for name in changed_columns:
        setattr(product, name, fields[name])
    _flush_checking_isbn(session, product)
    updated = product_to_dict(product)
    # Named as the API names them (``price``, not ``price_amount``), for consumers.
    changed = sorted(
        name for name in updated if name not in VERSION_FIELDS and updated[name] != before[name]
    )
    outbox.add(session, "product.updated", {**updated, "changed_fields": changed})
    log.info("product updated", extra={"product_id": updated["id"], "changed_fields": changed})
    return updated


def delete_product(session: Session, product_id: str, expected_version: int | None = None) -> None:
    """Withdraws a book: it disappears from reads and lists; the row stays for history.
    Its images go, their objects after the commit (svc_catalog/image_objects.py)."""
    product = live_product(session, product_id, for_update=True, expected_version=expected_version)
    product.deleted_at = now = utcnow()
    discard_product_images(
        session, product, now, image_store.current().settings.delete_grace_seconds
    )
    session.flush()
    session.expire(product, ["images"])
    session.refresh(product)
    outbox.add(
        session,
        "product.deleted",
        {**product_to_dict(product), "deleted_at": isoformat(product.deleted_at)},
    )
    log.info("product withdrawn", extra={"product_id": str(product.id)})


def list_products(
    session: Session,
    *,
    filters: dict[str, Any] | None = None,
    sort: str = "title",
    cursor: str | None = None,
    limit: int | None = None,
) -> dict[str, Any]:
    limit = validate_limit(limit)
    if sort not in SORTS:
        raise InvalidParameter(f"sort: must be one of {', '.join(SORTS)}.", {"parameter": "sort"})
    filters = check_book_filters(filters, FILTERS)
    column, descending = SORTS[sort]
    query = _filtered(session, select(Product).where(Product.deleted_at.is_(None)), filters)
    query_identity = {"filters": filters, "sort": sort}
    if cursor:
        raw_value, raw_id = decode_cursor(cursor, query_identity, arity=2)
        position = tuple_(column, Product.id)
        after = (_cursor_value(sort, raw_value), cursor_id(raw_id))
        query = query.where(position < after if descending else position > after)
    order = (column.desc(), Product.id.desc()) if descending else (column, Product.id)
    rows = session.scalars(query.order_by(*order).limit(limit + 1)).all()
    items = rows[:limit]
    next_cursor = None
    if len(rows) > limit:
        last = items[-1]
        next_cursor = encode_cursor(
            [_cursor_encode(getattr(last, column.key)), str(last.id)], query_identity
        )
    return page([product_to_dict(product) for product in items], next_cursor)


def _filtered(session: Session, query: Select, filters: dict[str, Any]) -> Select:
    if "category_id" in filters:
        categories = category_and_descendants(session, uuid.UUID(filters["category_id"]))
        query = query.where(Product.category_id.in_(categories))
    if "author" in filters:
        query = query.where(Product.author_keys.contains([filters["author"]]))
    if "price_min" in filters:
        query = query.where(Product.price_amount >= filters["price_min"])
    if "price_max" in filters:
        query = query.where(Product.price_amount <= filters["price_max"])
    return query


def _cursor_encode(value: Any) -> Any:
    return isoformat(value) if isinstance(value, datetime) else value


def _cursor_value(sort: str, raw: Any) -> Any:
    """The sort-key value from a cursor, checked against the sort's type."""
    key = sort.lstrip("-")
    try:
        if key == "title" and isinstance(raw, str):
            return raw
        if key == "price" and isinstance(raw, int) and not isinstance(raw, bool):
            return raw
        if key == "created_at" and isinstance(raw, str):
            return datetime.fromisoformat(raw)
    except ValueError:
        pass
    raise InvalidParameter("The cursor is not valid.", {"parameter": "cursor"})


def live_product(
    session: Session,
    product_id: str,
    *,
    for_update: bool = False,
    expected_version: int | None = None,
) -> Product:
    query = select(Product).where(
        Product.id == parse_id(product_id, "product_id"), Product.deleted_at.is_(None)
    )
    product = session.scalars(query.with_for_update() if for_update else query).first()
    if product is None:
        raise NotFound("No such product.", {"product_id": str(product_id)})
    if expected_version is not None and product.version != expected_version:
        raise PreconditionFailed(
            f"The product is at version {product.version}, not {expected_version}; "
            "read it again before changing it.",
            {"current_version": product.version},
        )
    return product


def _flush_checking_isbn(session: Session, product: Product) -> None:
    """Writes ``product``; a live book with the same ISBN is a :class:`Conflict`."""
    with session.no_autoflush:
        existing = session.scalars(
            select(Product.id).where(
                Product.isbn13 == product.isbn13,
                Product.deleted_at.is_(None),
                Product.id != product.id,
            )
        ).first()
    if existing is not None:
        raise _isbn_taken(product.isbn13, existing)
    try:
        with session.begin_nested():
            session.add(product)
            session.flush()
    except IntegrityError:
        # Another transaction took the ISBN between the check and the write; the unique
        # index is what actually guarantees one live book per ISBN.
        raise _isbn_taken(product.isbn13, None) from None
    session.refresh(product)


def _isbn_taken(isbn13: str, existing: uuid.UUID | None) -> Conflict:
    return Conflict(
        f"Another book already has ISBN {isbn13}.",
        {"field": "isbn13", "existing_product_id": str(existing) if existing else None},
    )
