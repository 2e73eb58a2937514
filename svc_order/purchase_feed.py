"""The order service's side of the recommendation inputs' reconciliation
(svc_search/purchases.py, docs/decisions/0140): which orders count as purchases, by id
range, and what each one bought; and of the analytics windows' (svc_analytics/reconcile.py,
docs/decisions/0143): which orders are paid, and where and how analytics should count them.

An order counts from its ``order.paid`` until its ``order.refunded``, exactly what search
records from those events: paid at some time, and not refunded. Each order's
fingerprint is the MD5 of its ``product_id:quantity:user_id`` list, computed the same
way on search's side, so an order whose rows were lost or altered there differs.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from common import reconcile
from common.db import isoformat, parse_id
from common.errors import InvalidParameter
from svc_order.models import Order
from svc_order.orders import order_to_dict

#: One row per purchase: the order id and the fingerprint of what it bought.
PURCHASES = (
    "(SELECT orders.id AS order_id, md5(string_agg(CAST(items.product_id AS text) || ':' || "
    "CAST(items.quantity AS text) || ':' || CAST(orders.user_id AS text), ',' "
    "ORDER BY items.product_id)) AS fingerprint "
    "FROM orders JOIN order_items AS items ON items.order_id = orders.id "
    "WHERE orders.paid_at IS NOT NULL AND orders.status <> 'REFUNDED' "
    "GROUP BY orders.id) AS purchases"
)


#: One row per paid order: the order id and the fingerprint of what analytics keeps of it
#: (svc_analytics/reconcile.py computes the same from its own record): currency, the start
#: of the 5-minute window of its payment (epoch seconds) and all it has refunded.
PAID_ORDERS = (
    "(SELECT id AS order_id, md5(currency || ':' || "
    "CAST(CAST(floor(extract(epoch FROM paid_at) / 300) * 300 AS bigint) AS text) || ':' || "
    "CAST(coalesce(CAST(payment ->> 'refunded_amount' AS bigint), 0) AS text)) AS fingerprint "
    "FROM orders WHERE paid_at IS NOT NULL) AS paid_orders"
)


def purchase_digest(session: Session) -> reconcile.Digest:
    return reconcile.digest(session, PURCHASES, "order_id", "fingerprint", "true")


def purchase_fingerprints(session: Session, bucket: str) -> dict[str, str]:
    return _fingerprints(session, PURCHASES, bucket)


def paid_order_digest(session: Session) -> reconcile.Digest:
    return reconcile.digest(session, PAID_ORDERS, "order_id", "fingerprint", "true")


def paid_order_fingerprints(session: Session, bucket: str) -> dict[str, str]:
    return _fingerprints(session, PAID_ORDERS, bucket)


def _fingerprints(session: Session, rows: str, bucket: str) -> dict[str, str]:
    try:
        return reconcile.versions(session, rows, "order_id", "fingerprint", "true", bucket)
    except ValueError as error:
        raise InvalidParameter(str(error), {"parameter": "bucket"}) from None


def export_orders(session: Session, order_ids: list[str]) -> list[dict[str, Any]]:
    """The orders among ``order_ids`` as ``list_orders`` shows them (what the analytics
    backfill reads); unknown ids are absent."""
    ids = [parse_id(order_id, "order_id") for order_id in order_ids]
    found = session.scalars(
        select(Order)
        .where(Order.id.in_(ids))
        .options(selectinload(Order.items), selectinload(Order.history))
    ).all()
    return [order_to_dict(order) for order in found]


def export_purchases(session: Session, order_ids: list[str]) -> list[dict[str, Any]]:
    """The orders among ``order_ids`` that count as purchases, as search records them
    (``recommend.record_order``); the others are absent (refunded or never paid)."""
    ids = [parse_id(order_id, "order_id") for order_id in order_ids]
    orders = session.scalars(
        select(Order)
        .where(Order.id.in_(ids), Order.paid_at.is_not(None), Order.status != "REFUNDED")
        .options(selectinload(Order.items))
    ).all()
    return [
        {
            "id": str(order.id),
            "user_id": str(order.user_id),
            "paid_at": isoformat(order.paid_at),
            "items": [
                {"product_id": str(item.product_id), "quantity": item.quantity}
                for item in order.items
            ],
        }
        for order in orders
    ]
