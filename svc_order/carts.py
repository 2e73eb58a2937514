"""Carts: one per customer, priced and checked against the catalog when read.

A cart is its lines; it expires after ``ORDER_CART_TTL_SECONDS`` without a change. The
price of each line is remembered when it is set, so a later catalog change is flagged
(``price_changed``) rather than silently charged; stock problems are flagged the same
way (``out_of_stock``, ``insufficient_stock``, ``unavailable``).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from common.db import isoformat, parse_id, utcnow
from common.errors import Conflict, InvalidInput, NotFound
from common.money import money
from svc_order.models import CartItem
from svc_order.settings import Settings

MAX_LINES = 50
MAX_QUANTITY = 100


def cart_ttl() -> timedelta:
    return timedelta(seconds=Settings.current().cart_ttl_seconds)


def lines(session: Session, user_id: str, now: datetime | None = None) -> list[CartItem]:
    """The cart's lines, oldest first; an expired cart is emptied first."""
    user = parse_id(user_id, "user_id")
    rows = session.scalars(
        select(CartItem)
        .where(CartItem.user_id == user)
        .order_by(CartItem.added_at, CartItem.product_id)
    ).all()
    if rows and max(row.updated_at for row in rows) < (now or utcnow()) - cart_ttl():
        clear(session, user_id)
        return []
    return list(rows)


def set_quantity(
    session: Session, user_id: str, product_id: str, quantity: int, product: dict[str, Any] | None
) -> None:
    """Puts ``quantity`` of a product in the cart (adding or changing the line).

    ``product`` is what the catalog says about it now (None: no such product)."""
    if not isinstance(quantity, int) or not 1 <= quantity <= MAX_QUANTITY:
        raise InvalidInput(f"quantity: must be 1 to {MAX_QUANTITY}.", {"field": "quantity"})
    if product is None:
        raise NotFound("No such product.", {"product_id": product_id})
    if not product["purchasable"]:
        raise Conflict("This book is no longer for sale.", {"product_id": product_id})
    if quantity > product["available"]:
        raise Conflict(
            f"Only {product['available']} in stock.",
            {"product_id": product_id, "available": product["available"]},
        )
    current = lines(session, user_id)
    currency = product["price"]["currency"]
    others = [line for line in current if str(line.product_id) != product_id]
    if others and others[0].currency != currency:
        raise InvalidInput(
            f"The cart is in {others[0].currency}; this book is priced in {currency}.",
            {"field": "product_id"},
        )
    if len(others) >= MAX_LINES:
        raise Conflict(f"A cart holds at most {MAX_LINES} different books.")
    now = utcnow()
    values = {
        "user_id": parse_id(user_id, "user_id"),
        "product_id": parse_id(product_id, "product_id"),
        "quantity": quantity,
        "unit_price_amount": product["price"]["amount"],
        "currency": currency,
        "updated_at": now,
    }
    session.execute(
        insert(CartItem)
        .values(**values, added_at=now)
        .on_conflict_do_update(index_elements=["user_id", "product_id"], set_=values)
    )
    _touch(session, user_id, now)


def _touch(session: Session, user_id: str, now: datetime) -> None:
    # Any change keeps the whole cart alive.
    session.execute(
        CartItem.__table__.update()
        .where(CartItem.user_id == parse_id(user_id, "user_id"))
        .values(updated_at=now)
    )


def remove(session: Session, user_id: str, product_id: str) -> None:
    result = session.execute(
        delete(CartItem).where(
            CartItem.user_id == parse_id(user_id, "user_id"),
            CartItem.product_id == parse_id(product_id, "product_id"),
        )
    )
    if result.rowcount == 0:
        raise NotFound("This book is not in the cart.", {"product_id": product_id})
    _touch(session, user_id, utcnow())


def clear(session: Session, user_id: str, product_ids: list[uuid.UUID] | None = None) -> None:
    """Empties the cart (or only the given products: what an order bought)."""
    query = delete(CartItem).where(CartItem.user_id == parse_id(user_id, "user_id"))
    if product_ids is not None:
        query = query.where(CartItem.product_id.in_(product_ids))
    session.execute(query)


def purge_expired(session: Session, now: datetime) -> int:
    stale_users = (
        select(CartItem.user_id)
        .group_by(CartItem.user_id)
        .having(func.max(CartItem.updated_at) < now - cart_ttl())
    )
    return session.execute(delete(CartItem).where(CartItem.user_id.in_(stale_users))).rowcount


def view(rows: list[CartItem], products: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The cart as the customer sees it, priced now, with what needs their attention."""
    items = []
    subtotal = 0
    for row in rows:
        product = products.get(str(row.product_id))
        flags = []
        if product is None or not product["purchasable"]:
            flags.append("unavailable")
        elif product["available"] == 0:
            flags.append("out_of_stock")
        elif product["available"] < row.quantity:
            flags.append("insufficient_stock")
        unit_price = product["price"]["amount"] if product else row.unit_price_amount
        if "unavailable" not in flags and unit_price != row.unit_price_amount:
            flags.append("price_changed")
        subtotal += unit_price * row.quantity
        items.append(
            {
                "product_id": str(row.product_id),
                "title": product["title"] if product else None,
                "quantity": row.quantity,
                "unit_price": money(unit_price, row.currency),
                "price_when_added": money(row.unit_price_amount, row.currency),
                "line_total": money(unit_price * row.quantity, row.currency),
                "available": product["available"] if product else 0,
                "flags": flags,
            }
        )
    updated = max((row.updated_at for row in rows), default=None)
    return {
        "items": items,
        "item_count": sum(row.quantity for row in rows),
        "subtotal": money(subtotal, rows[0].currency) if rows else None,
        "updated_at": isoformat(updated),
        "expires_at": isoformat(updated + cart_ttl()) if updated else None,
    }
