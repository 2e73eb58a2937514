"""Orders in the database: loading the aggregate (svc_order/domain.py) and saving what
it decided, what a customer and an admin see, history.

Every change of status the order records is saved (who, why, when) and published as
``order.<new status>`` through the outbox, in the same transaction.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, selectinload

from common.db import isoformat, parse_id, utcnow
from common.errors import NotFound
from common.money import money
from common.pagination import Filter, filtered, newest_first
from svc_order import domain
from svc_order.models import Order, OrderItem, OrderStatusChange, outbox
from svc_order.settings import Settings

# The states and their moves belong to the order (svc_order/domain.py).
PENDING_PAYMENT, PAID, SHIPPED = domain.PENDING_PAYMENT, domain.PAID, domain.SHIPPED
DELIVERED, CANCELLED, REFUNDED = domain.DELIVERED, domain.CANCELLED, domain.REFUNDED
STATUSES = domain.STATUSES
TRANSITIONS = domain.TRANSITIONS
can_move = domain.can_move
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
    return Settings.current().checkout_window_seconds


def action_window_seconds() -> int:
    """How long a customer has to complete 3-D Secure before the order is given up."""
    return Settings.current().action_window_seconds


def order_id_for(user_id: str, idempotency_key: str) -> uuid.UUID:
    return uuid.uuid5(_ORDER_ID_NAMESPACE, f"{user_id}\n{idempotency_key}")


def to_domain(row: Order) -> domain.Order:
    """The aggregate of a loaded row (lock the row first if it is to be saved)."""
    return domain.Order(
        id=str(row.id),
        user_id=str(row.user_id),
        status=row.status,
        created_at=row.created_at,
        # Copies: the aggregate changes its own, and assigning them back marks the row.
        payment=dict(row.payment) if row.payment is not None else None,
        cancel_reason=row.cancel_reason,
        failure=dict(row.failure) if row.failure is not None else None,
        compensation_pending=row.compensation_pending,
    )


def save(session: Session, row: Order, order: domain.Order) -> None:
    """Writes what ``order`` decided onto its (locked) row: its fields, a history line and
    a timestamp per change of status, and one ``order.<status>`` event per change."""
    row.payment = order.payment
    row.cancel_reason = order.cancel_reason
    row.failure = order.failure
    row.compensation_pending = order.compensation_pending
    changes, order.changes = order.changes, []
    for change in changes:
        now = utcnow()
        # Appended to the loaded history and stamped here (not by the database), so the
        # event below sees the order as saved without reading it back.
        row.history.append(
            OrderStatusChange(
                order_id=row.id,
                from_status=change.from_status,
                to_status=change.to_status,
                reason=change.reason,
                actor_id=parse_id(change.actor_id, "actor_id") if change.actor_id else None,
                at=now,
            )
        )
        row.status = change.to_status
        row.updated_at = now
        if change.to_status in _TIMESTAMPS:
            setattr(row, _TIMESTAMPS[change.to_status], now)
        session.flush()
        outbox.add(session, f"order.{change.to_status.lower()}", event_data(row))


def transition(
    session: Session,
    order: Order,
    target: str,
    *,
    reason: str | None = None,
    actor_id: str | None = None,
) -> None:
    """Moves ``order`` (locked by the caller) to ``target`` or raises
    :class:`~svc_order.domain.IllegalTransition` (a 409)."""
    aggregate = to_domain(order)
    aggregate.move(target, reason, actor_id)
    save(session, order, aggregate)


def event_data(order: Order) -> dict[str, Any]:
    """What the order's events carry: the order as its owner sees it and, when known,
    ``customer`` (email, name, phone), so consumers need not ask auth who to write to."""
    data = order_to_dict(order)
    if order.contact is not None:
        data["customer"] = order.contact
    return data


def forget_contact(session: Session, user_id: str) -> None:
    """A deleted account's orders stay (anonymous), without a way to reach its owner."""
    session.execute(
        update(Order)
        .where(Order.user_id == parse_id(user_id, "user_id"), Order.contact.is_not(None))
        .values(contact=None)
    )


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


#: The states of an order whose books the customer has (or had) bought.
BOUGHT = (PAID, SHIPPED, DELIVERED)


def has_bought(session: Session, user_id: str, product_id: str) -> bool:
    return (
        session.scalar(
            select(Order.id)
            .join(OrderItem, OrderItem.order_id == Order.id)
            .where(
                Order.user_id == parse_id(user_id, "user_id"),
                OrderItem.product_id == parse_id(product_id, "product_id"),
                Order.status.in_(BOUGHT),
            )
            .limit(1)
        )
        is not None
    )


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
    query, filters = filtered(
        select(Order).options(selectinload(Order.items), selectinload(Order.history)),
        {"user_id": user_id, "status": status},
        ORDER_FILTERS,
    )
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
