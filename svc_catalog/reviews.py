"""Ratings and reviews: a customer who bought a book rates it 1 to 5, once.

"Bought" means an order of theirs with the book is PAID, SHIPPED or DELIVERED. The
order service owns orders, so the caller passes ``has_bought`` (an RPC to it, see
service.py); asking it at review time is authoritative, where a projection of order
events would lag a purchase by a moment (docs/decisions/0052). The one-review rule is the
unique index on (product, user), so two concurrent first reviews cannot both land.

Each review updates the book's totals (``product_ratings``) in the same transaction and
announces ``review.created`` with the new average and count, which search indexes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from common import schemas
from common.db import isoformat, new_id, parse_id
from common.errors import Conflict, Forbidden, NotFound
from common.pagination import newest_first
from svc_catalog.models import Product, ProductRating, Review, outbox

log = logging.getLogger(__name__)

#: ``has_bought(user_id, product_id)``: whether the customer bought the book.
PurchaseCheck = Callable[[str, str], bool]


def review_to_dict(review: Review) -> dict[str, Any]:
    return {
        "id": str(review.id),
        "product_id": str(review.product_id),
        "user_id": str(review.user_id),
        "rating": review.rating,
        "title": review.title,
        "body": review.body,
        "created_at": isoformat(review.created_at),
    }


def rating_to_dict(totals: ProductRating | None) -> dict[str, Any]:
    count = totals.rating_count if totals else 0
    average = round(totals.rating_sum / count, 2) if count else 0.0
    return {"average": average, "count": count}


def create_review(
    session: Session,
    product_id: str,
    user_id: str,
    review: dict[str, Any],
    has_bought: PurchaseCheck,
) -> dict[str, Any]:
    schemas.validate("ReviewCreate", review)
    product = _live_product_id(session, product_id)
    user = parse_id(user_id, "user_id")
    if _existing(session, product, user) is not None:
        raise _already_reviewed(product_id)
    if not has_bought(str(user), str(product)):
        raise Forbidden(
            "Only customers who bought this book can review it.", {"product_id": product_id}
        )
    created = Review(
        id=new_id(),
        product_id=product,
        user_id=user,
        rating=review["rating"],
        title=(review.get("title") or "").strip() or None,
        body=(review.get("body") or "").strip() or None,
    )
    try:
        with session.begin_nested():
            session.add(created)
            session.flush()
    except IntegrityError:
        # A concurrent first review of the same customer won the unique index.
        raise _already_reviewed(product_id) from None
    session.refresh(created)
    totals = session.execute(
        insert(ProductRating)
        .values(product_id=product, rating_count=1, rating_sum=created.rating)
        .on_conflict_do_update(
            index_elements=["product_id"],
            set_={
                "rating_count": ProductRating.rating_count + 1,
                "rating_sum": ProductRating.rating_sum + created.rating,
            },
        )
        .returning(ProductRating)
    ).scalar_one()
    result = review_to_dict(created)
    outbox.add(session, "review.created", {**result, "product_rating": rating_to_dict(totals)})
    log.info("review added", extra={"product_id": product_id, "rating": created.rating})
    return result


def list_reviews(
    session: Session, product_id: str, cursor: str | None = None, limit: int | None = None
) -> dict[str, Any]:
    """A book's reviews, newest first, with its rating totals."""
    product = _live_product_id(session, product_id)
    result = newest_first(
        session,
        select(Review).where(Review.product_id == product),
        Review.created_at,
        Review.id,
        filters={"product_id": str(product)},
        cursor=cursor,
        limit=limit,
        to_dict=review_to_dict,
    )
    return {**result, "rating": rating_to_dict(session.get(ProductRating, product))}


def _existing(session: Session, product: Any, user: Any) -> Review | None:
    return session.scalars(
        select(Review).where(Review.product_id == product, Review.user_id == user)
    ).first()


def _already_reviewed(product_id: str) -> Conflict:
    return Conflict("You have already reviewed this book.", {"product_id": product_id})


def _live_product_id(session: Session, product_id: str) -> Any:
    parsed = parse_id(product_id, "product_id")
    found = session.scalar(
        select(Product.id).where(Product.id == parsed, Product.deleted_at.is_(None))
    )
    if found is None:
        raise NotFound("No such product.", {"product_id": product_id})
    return found
