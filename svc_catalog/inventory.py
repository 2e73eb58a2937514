"""Stock and reservations: nothing is ever oversold.

Stock rows are locked in product-id order (so two checkouts wanting the same books cannot
deadlock) and database constraints keep ``0 <= reserved <= on_hand``. A reservation holds
stock for one order until it is committed (sold), released (the order failed or was
cancelled: stock goes back) or expires (a timer releases abandoned checkouts). Each
operation is idempotent per order, so the order saga can retry any step.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from common.db import isoformat, parse_id, utcnow
from common.errors import Conflict, InvalidInput, NotFound
from svc_catalog.models import Product, Reservation, ReservationItem, StockLevel, outbox

log = logging.getLogger(__name__)

HELD = "held"
COMMITTED = "committed"
RELEASED = "released"
EXPIRED = "expired"
MAX_LINES = 100
MAX_QUANTITY = 1000
MAX_TTL_SECONDS = 24 * 3600


def stock_to_dict(product_id: uuid.UUID, level: StockLevel | None) -> dict[str, Any]:
    on_hand = level.on_hand if level else 0
    reserved = level.reserved if level else 0
    return {
        "product_id": str(product_id),
        "on_hand": on_hand,
        "reserved": reserved,
        "available": on_hand - reserved,
        "low_stock_threshold": level.low_stock_threshold if level else 5,
    }


def _live_product_id(session: Session, product_id: str) -> uuid.UUID:
    parsed = parse_id(product_id, "product_id")
    exists = session.scalar(
        select(Product.id).where(Product.id == parsed, Product.deleted_at.is_(None))
    )
    if exists is None:
        raise NotFound("No such product.", {"product_id": product_id})
    return parsed


def get_stock(session: Session, product_id: str) -> dict[str, Any]:
    parsed = _live_product_id(session, product_id)
    return stock_to_dict(parsed, session.get(StockLevel, parsed))


def availability(session: Session, product_ids: list[str]) -> dict[str, Any]:
    """What a cart needs about each product: live or not, title, price, available."""
    ids = sorted({parse_id(raw, "product_id") for raw in product_ids})
    rows = session.execute(
        select(Product, StockLevel)
        .outerjoin(StockLevel, StockLevel.product_id == Product.id)
        .where(Product.id.in_(ids))
    ).all()
    found = {
        str(product.id): {
            "product_id": str(product.id),
            "title": product.title,
            "isbn13": product.isbn13,
            "price": {"amount": product.price_amount, "currency": product.currency},
            "purchasable": product.deleted_at is None,
            "available": (level.on_hand - level.reserved) if level else 0,
            "stock_version": level.version if level else 0,
        }
        for product, level in rows
    }
    return {"products": found}


def _locked_level(session: Session, product_id: uuid.UUID) -> StockLevel:
    session.execute(
        insert(StockLevel)
        .values(product_id=product_id, on_hand=0, reserved=0, low_stock_threshold=5)
        .on_conflict_do_nothing(index_elements=["product_id"])
    )
    return session.get(StockLevel, product_id, with_for_update=True, populate_existing=True)


def set_stock(
    session: Session, product_id: str, on_hand: int, low_stock_threshold: int | None = None
) -> dict[str, Any]:
    """An administrator's count: sets the quantity on hand (never below what is reserved)."""
    if not 0 <= on_hand <= 10_000_000:
        raise InvalidInput("on_hand: must be between 0 and 10,000,000.", {"field": "on_hand"})
    parsed = _live_product_id(session, product_id)
    level = _locked_level(session, parsed)
    if on_hand < level.reserved:
        raise Conflict(
            f"{level.reserved} units are reserved by open orders; on hand cannot go below that.",
            {"reserved": level.reserved},
        )
    before = level.on_hand - level.reserved
    previous_on_hand = level.on_hand
    level.on_hand = on_hand
    if low_stock_threshold is not None:
        level.low_stock_threshold = low_stock_threshold
    session.flush()
    outbox.add(
        session,
        "inventory.adjusted",
        {
            "product_id": str(parsed),
            "on_hand_before": previous_on_hand,
            **stock_to_dict(parsed, level),
            "stock_version": level.version,
        },
    )
    _announce_low_stock(session, level, before)
    return stock_to_dict(parsed, level)


def _announce_low_stock(session: Session, level: StockLevel, available_before: int) -> None:
    available = level.on_hand - level.reserved
    if available <= level.low_stock_threshold < available_before:
        outbox.add(
            session,
            "inventory.low_stock",
            {
                "product_id": str(level.product_id),
                "available": available,
                "low_stock_threshold": level.low_stock_threshold,
            },
        )


def reservation_to_dict(
    reservation: Reservation, levels: dict[uuid.UUID, StockLevel] | None = None
) -> dict[str, Any]:
    """The reservation; with ``levels`` (the stock rows it just changed), each item also
    says what is available now and the row's version: what inventory events carry, so
    their consumers need not ask (docs/decisions/0081)."""
    return {
        "reservation_id": str(reservation.id),
        "order_id": str(reservation.order_id),
        "status": reservation.status,
        "expires_at": isoformat(reservation.expires_at),
        "items": [
            {
                "product_id": str(item.product_id),
                "quantity": item.quantity,
                **(_stock_now(levels[item.product_id]) if levels else {}),
            }
            for item in reservation.items
        ],
    }


def _stock_now(level: StockLevel) -> dict[str, int]:
    return {"available": level.on_hand - level.reserved, "stock_version": level.version}


def _checked_items(items: list[dict[str, Any]]) -> dict[uuid.UUID, int]:
    if not isinstance(items, list) or not items:
        raise InvalidInput("items: at least one item is needed.", {"field": "items"})
    if len(items) > MAX_LINES:
        raise InvalidInput(f"items: at most {MAX_LINES} lines.", {"field": "items"})
    wanted: dict[uuid.UUID, int] = {}
    for item in items:
        quantity = item.get("quantity") if isinstance(item, dict) else None
        if (
            not isinstance(quantity, int)
            or isinstance(quantity, bool)
            or not 0 < quantity <= MAX_QUANTITY
        ):
            raise InvalidInput(
                f"items: each quantity must be 1 to {MAX_QUANTITY}.", {"field": "items"}
            )
        product_id = parse_id(item.get("product_id"), "product_id")
        wanted[product_id] = wanted.get(product_id, 0) + quantity
    return wanted


def _lock_order(session: Session, order_id: uuid.UUID) -> Reservation | None:
    # Serialises every operation on one order's reservation across instances.
    session.execute(
        text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"reservation:{order_id}"}
    )
    return session.scalars(
        select(Reservation).where(Reservation.order_id == order_id).with_for_update()
    ).first()


def reserve(
    session: Session, order_id: str, items: list[dict[str, Any]], ttl_seconds: int
) -> dict[str, Any]:
    """Holds every item for the order, or nothing: :class:`Conflict` with ``short_items``
    when any is short. Reserving again for the same order returns the same reservation."""
    order = parse_id(order_id, "order_id")
    wanted = _checked_items(items)
    if not 0 < ttl_seconds <= MAX_TTL_SECONDS:
        raise InvalidInput("ttl_seconds: must be between 1 and 86400.", {"field": "ttl_seconds"})
    existing = _lock_order(session, order)
    if existing is not None:
        if existing.status in (HELD, COMMITTED):
            return reservation_to_dict(existing)
        raise Conflict(
            f"The reservation for this order was {existing.status}.",
            {"order_id": order_id, "reservation_status": existing.status},
        )
    product_ids = sorted(wanted)
    live = set(
        session.scalars(
            select(Product.id).where(Product.id.in_(product_ids), Product.deleted_at.is_(None))
        )
    )
    if missing := [str(product_id) for product_id in product_ids if product_id not in live]:
        raise InvalidInput(
            "Some products are not (or no longer) for sale.",
            {"field": "items", "products": missing},
        )
    levels = {
        level.product_id: level for level in (_locked_level(session, pid) for pid in product_ids)
    }
    short = [
        {
            "product_id": str(product_id),
            "requested": wanted[product_id],
            "available": levels[product_id].on_hand - levels[product_id].reserved,
        }
        for product_id in product_ids
        if levels[product_id].on_hand - levels[product_id].reserved < wanted[product_id]
    ]
    if short:
        raise Conflict("Not enough stock for some items.", {"short_items": short})
    before = {pid: level.on_hand - level.reserved for pid, level in levels.items()}
    for product_id in product_ids:
        levels[product_id].reserved += wanted[product_id]
    reservation = Reservation(
        id=uuid.uuid4(),
        order_id=order,
        status=HELD,
        expires_at=utcnow() + timedelta(seconds=ttl_seconds),
        items=[ReservationItem(product_id=pid, quantity=wanted[pid]) for pid in product_ids],
    )
    session.add(reservation)
    session.flush()
    for product_id in product_ids:
        _announce_low_stock(session, levels[product_id], before[product_id])
    outbox.add(session, "inventory.reserved", reservation_to_dict(reservation, levels))
    return reservation_to_dict(reservation)


def commit(session: Session, order_id: str) -> dict[str, Any]:
    """The reserved stock is sold: it leaves on-hand. Idempotent."""
    reservation = _lock_order(session, parse_id(order_id, "order_id"))
    if reservation is None:
        raise NotFound("No reservation for this order.", {"order_id": order_id})
    if reservation.status == COMMITTED:
        return reservation_to_dict(reservation)
    if reservation.status != HELD:
        raise Conflict(
            f"The reservation was {reservation.status}; it cannot be committed.",
            {"order_id": order_id, "reservation_status": reservation.status},
        )
    levels = {}
    for item in reservation.items:
        level = session.get(StockLevel, item.product_id, with_for_update=True)
        level.on_hand -= item.quantity
        level.reserved -= item.quantity
        levels[item.product_id] = level
    reservation.status = COMMITTED
    session.flush()
    outbox.add(session, "inventory.committed", reservation_to_dict(reservation, levels))
    return reservation_to_dict(reservation)


def release(session: Session, order_id: str, reason: str, status: str = RELEASED) -> dict[str, Any]:
    """Gives the stock back: a held reservation stops holding, a committed one (a paid
    order cancelled before shipping) is restocked. Idempotent; no reservation is fine."""
    order = parse_id(order_id, "order_id")
    reservation = _lock_order(session, order)
    if reservation is None:
        # A tombstone: a reserve call for this order still in flight is refused when it
        # lands, instead of holding stock for an order that has given up.
        reservation = Reservation(
            id=uuid.uuid4(), order_id=order, status=RELEASED, expires_at=utcnow(), items=[]
        )
        session.add(reservation)
        session.flush()
        return reservation_to_dict(reservation)
    if reservation.status in (RELEASED, EXPIRED):
        return reservation_to_dict(reservation)
    restocked = reservation.status == COMMITTED
    levels = {}
    for item in reservation.items:
        level = session.get(StockLevel, item.product_id, with_for_update=True)
        if restocked:
            level.on_hand += item.quantity
        else:
            level.reserved -= item.quantity
        levels[item.product_id] = level
    reservation.status = status
    session.flush()
    outbox.add(
        session,
        "inventory.reservation_expired" if status == EXPIRED else "inventory.released",
        {**reservation_to_dict(reservation, levels), "reason": reason, "restocked": restocked},
    )
    return reservation_to_dict(reservation)


def extend(session: Session, order_id: str, ttl_seconds: int) -> dict[str, Any]:
    """Holds a reservation longer (the customer is authenticating a payment); never
    shortens it. Only a held reservation can be extended."""
    if not 0 < ttl_seconds <= MAX_TTL_SECONDS:
        raise InvalidInput("ttl_seconds: must be between 1 and 86400.", {"field": "ttl_seconds"})
    reservation = _lock_order(session, parse_id(order_id, "order_id"))
    if reservation is None:
        raise NotFound("No reservation for this order.", {"order_id": order_id})
    if reservation.status != HELD:
        raise Conflict(
            f"The reservation was {reservation.status}; it cannot be extended.",
            {"order_id": order_id, "reservation_status": reservation.status},
        )
    reservation.expires_at = max(reservation.expires_at, utcnow() + timedelta(seconds=ttl_seconds))
    session.flush()
    return reservation_to_dict(reservation)


def get_reservation(session: Session, order_id: str) -> dict[str, Any]:
    reservation = session.scalars(
        select(Reservation).where(Reservation.order_id == parse_id(order_id, "order_id"))
    ).first()
    if reservation is None:
        raise NotFound("No reservation for this order.", {"order_id": order_id})
    return reservation_to_dict(reservation)


def due_for_expiry(session: Session, now: datetime, limit: int = 100) -> list[str]:
    """Order ids whose held reservations have run out (the timer releases each in its
    own transaction)."""
    return [
        str(order_id)
        for order_id in session.scalars(
            select(Reservation.order_id)
            .where(Reservation.status == HELD, Reservation.expires_at < now)
            .order_by(Reservation.expires_at)
            .limit(limit)
        )
    ]


def expire(session: Session, order_id: str, now: datetime) -> bool:
    """Releases the order's reservation if it is still held and overdue."""
    reservation = _lock_order(session, parse_id(order_id, "order_id"))
    if reservation is None or reservation.status != HELD or reservation.expires_at >= now:
        return False
    release(session, order_id, reason="expired", status=EXPIRED)
    log.info("reservation expired", extra={"order_id": order_id})
    return True
