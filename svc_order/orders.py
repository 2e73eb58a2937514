"""Orders: the state machine, what a customer and an admin see, history.

    PENDING_PAYMENT ──► PAID ──► SHIPPED ──► DELIVERED ──► REFUNDED
          │               │         └────────────────────► REFUNDED
          └──► CANCELLED ◄┘ ──► REFUNDED   (a paid order, once its refund went through)

Any other move is refused with 409. Every change is recorded (who, why, when) and
published as ``order.<new status>`` through the outbox, in the same transaction.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from common.config import env_int
from common.db import isoformat, parse_id, utcnow
from common.errors import Conflict, NotFound
from common.money import money
from common.pagination import Filter, filtered, newest_first
from svc_order.models import Order, OrderStatusChange, outbox

PENDING_PAYMENT = "PENDING_PAYMENT"
PAID = "PAID"
SHIPPED = "SHIPPED"
DELIVERED = "DELIVERED"
CANCELLED = "CANCELLED"
REFUNDED = "REFUNDED"
STATUSES = (PENDING_PAYMENT, PAID, SHIPPED, DELIVERED, CANCELLED, REFUNDED)

TRANSITIONS: dict[str, frozenset[str]] = {
    PENDING_PAYMENT: frozenset({PAID, CANCELLED}),
    PAID: frozenset({SHIPPED, CANCELLED}),
    SHIPPED: frozenset({DELIVERED, REFUNDED}),
    DELIVERED: frozenset({REFUNDED}),
    CANCELLED: frozenset({REFUNDED}),
    REFUNDED: frozenset(),
}
_TIMESTAMPS = {
    PAID: "paid_at",
    SHIPPED: "shipped_at",
    DELIVERED: "delivered_at",
    CANCELLED: "cancelled_at",
    REFUNDED: "refunded_at",
}
#: Checkout steps must finish within this many seconds of the order being placed; after
#: that the convergence timer settles the order (and payments refuses to authorize it).
_ORDER_ID_NAMESPACE = uuid.UUID("0f6f1c2e-3b7a-4d55-9a55-6b1f0c2d9e41")


def checkout_window_seconds() -> int:
    return env_int("ORDER_CHECKOUT_WINDOW_SECONDS", 60)


def action_window_seconds() -> int:
    """How long a customer has to complete 3-D Secure before the order is given up."""
    return env_int("ORDER_ACTION_WINDOW_SECONDS", 900)


def order_id_for(user_id: str, idempotency_key: str) -> uuid.UUID:
    return uuid.uuid5(_ORDER_ID_NAMESPACE, f"{user_id}\n{idempotency_key}")


def can_move(current: str, target: str) -> bool:
    return target in TRANSITIONS[current]


def transition(
    session: Session,
    order: Order,
    target: str,
    *,
    reason: str | None = None,
    actor_id: str | None = None,
) -> None:
    """Moves ``order`` (locked by the caller) to ``target`` or raises :class:`Conflict`."""
    if not can_move(order.status, target):
        raise Conflict(
            f"An order that is {order.status} cannot become {target}.",
            {"order_id": str(order.id), "current_status": order.status, "requested": target},
        )
    now = utcnow()
    session.add(
        OrderStatusChange(
            order_id=order.id,
            from_status=order.status,
            to_status=target,
            reason=reason,
            actor_id=parse_id(actor_id, "actor_id") if actor_id else None,
            at=now,
        )
    )
    order.status = target
    setattr(order, _TIMESTAMPS[target], now)
    session.flush()
    session.refresh(order)
    outbox.add(session, f"order.{target.lower()}", order_to_dict(order))


def order_to_dict(order: Order) -> dict[str, Any]:
    return {
        "id": str(order.id),
        "user_id": str(order.user_id),
        "status": order.status,
        "items": [
            {
                "product_id": str(item.product_id),
                "title": item.title,
                "isbn13": item.isbn13,
                "unit_price": money(item.unit_price_amount, order.currency),
                "quantity": item.quantity,
                "line_total": money(item.unit_price_amount * item.quantity, order.currency),
            }
            for item in order.items
        ],
        "subtotal": money(order.subtotal_amount, order.currency),
        "shipping": money(order.shipping_amount, order.currency),
        "total": money(order.total_amount, order.currency),
        "shipping_address": order.shipping_address,
        "payment": order.payment,
        "cancel_reason": order.cancel_reason,
        "history": [
            {
                "status": change.to_status,
                "at": isoformat(change.at),
                "reason": change.reason,
            }
            for change in order.history
        ],
        "created_at": isoformat(order.created_at),
        "updated_at": isoformat(order.updated_at),
        "paid_at": isoformat(order.paid_at),
        "shipped_at": isoformat(order.shipped_at),
        "delivered_at": isoformat(order.delivered_at),
        "cancelled_at": isoformat(order.cancelled_at),
        "refunded_at": isoformat(order.refunded_at),
    }


def find(session: Session, order_id: str, *, for_update: bool = False) -> Order:
    order = session.get(Order, parse_id(order_id, "order_id"), with_for_update=for_update)
    if order is None:
        raise NotFound("No such order.", {"order_id": order_id})
    return order


def find_owned(session: Session, order_id: str, user_id: str, *, for_update: bool = False) -> Order:
    """The order if ``user_id`` placed it; another customer's order is simply not found."""
    order = find(session, order_id, for_update=for_update)
    if str(order.user_id) != user_id:
        raise NotFound("No such order.", {"order_id": order_id})
    return order


ORDER_FILTERS = {
    "user_id": Filter(lambda user_id: Order.user_id == parse_id(user_id, "user_id")),
    "status": Filter(lambda status: Order.status == status, allowed=STATUSES),
}


def list_orders(
    session: Session,
    *,
    user_id: str | None = None,
    status: str | None = None,
    cursor: str | None = None,
    limit: int | None = None,
) -> dict[str, Any]:
    """Newest first; ``user_id`` restricts to one customer's (what customers get)."""
    query, filters = filtered(select(Order), {"user_id": user_id, "status": status}, ORDER_FILTERS)
    return newest_first(
        session,
        query,
        Order.created_at,
        Order.id,
        filters=filters,
        cursor=cursor,
        limit=limit,
        to_dict=order_to_dict,
    )
