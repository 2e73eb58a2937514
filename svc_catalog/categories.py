"""Category use cases. Categories form a tree (``parent_id``); there are few of them."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from common import schemas
from common.db import isoformat, new_id, parse_id
from common.errors import Conflict, InvalidInput, InvalidParameter, NotFound
from common.pagination import cursor_id, decode_cursor, encode_cursor, page, validate_limit
from svc_catalog.domain import clean_text
from svc_catalog.models import Category, outbox

log = logging.getLogger(__name__)


def category_to_dict(category: Category) -> dict[str, Any]:
    return {
        "id": str(category.id),
        "slug": category.slug,
        "name": category.name,
        "parent_id": str(category.parent_id) if category.parent_id else None,
        "created_at": isoformat(category.created_at),
    }


def get_category(session: Session, category_id: str) -> dict[str, Any]:
    category = session.get(Category, parse_id(category_id, "category_id"))
    if category is None:
        raise NotFound("No such category.", {"category_id": str(category_id)})
    return category_to_dict(category)


def require_category(session: Session, category_id: str) -> Category:
    """The category a book refers to; a reference to none is a broken rule (422)."""
    category = session.get(Category, parse_id(category_id, "category_id"))
    if category is None:
        raise InvalidInput(f"category_id: no category {category_id}.", {"field": "category_id"})
    return category


def create_category(session: Session, payload: dict[str, Any]) -> dict[str, Any]:
    schemas.validate("CategoryCreate", payload)
    parent_id = payload.get("parent_id")
    category = Category(
        id=new_id(),
        slug=payload["slug"],
        name=clean_text(payload["name"], "name"),
        parent_id=require_category(session, parent_id).id if parent_id else None,
    )
    try:
        with session.begin_nested():
            session.add(category)
            session.flush()
    except IntegrityError:
        raise Conflict(
            f"A category with slug {payload['slug']!r} already exists.", {"field": "slug"}
        ) from None
    session.refresh(category)
    created = category_to_dict(category)
    outbox.add(session, "category.created", created)
    log.info("category created", extra={"category_id": created["id"], "slug": category.slug})
    return created


def list_categories(
    session: Session, *, cursor: str | None = None, limit: int | None = None
) -> dict[str, Any]:
    limit = validate_limit(limit)
    query = select(Category)
    if cursor:
        name, raw_id = decode_cursor(cursor, {"list": "categories"}, arity=2)
        if not isinstance(name, str):
            raise InvalidParameter("The cursor is not valid.", {"parameter": "cursor"})
        query = query.where(tuple_(Category.name, Category.id) > (name, cursor_id(raw_id)))
    rows = session.scalars(query.order_by(Category.name, Category.id).limit(limit + 1)).all()
    items = rows[:limit]
    next_cursor = (
        encode_cursor([items[-1].name, str(items[-1].id)], {"list": "categories"})
        if len(rows) > limit
        else None
    )
    return page([category_to_dict(category) for category in items], next_cursor)


def category_and_descendants(session: Session, category_id: uuid.UUID) -> list[uuid.UUID]:
    tree = select(Category.id).where(Category.id == category_id).cte(recursive=True)
    tree = tree.union_all(select(Category.id).where(Category.parent_id == tree.c.id))
    return list(session.scalars(select(tree.c.id)))
