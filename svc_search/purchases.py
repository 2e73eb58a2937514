"""The recommendation inputs against the order service: drift found by digest, repaired
order by order (common/reconcile.py, docs/decisions/0140).

``interactions`` holds one row per book of every order paid and not refunded, written by
``order.paid`` and removed by ``order.refunded`` (svc_search/recommend.py). Compared by
order: the order service fingerprints each purchase the same way
(svc_order/purchase_feed.py), so an order whose rows were lost, altered or never written
(a consumer that joined late) is re-recorded from the order itself, and one the order
service no longer counts (its refund event lost) is forgotten.
"""

from __future__ import annotations

from typing import Any, Protocol

from sqlalchemy.orm import Session

from common import reconcile
from svc_search import recommend

COPY = "recommendation_inputs"
#: Orders fetched from the order service per call while repairing.
FETCH_BATCH = 500
#: One row per recorded order: its id and the fingerprint of its rows (as the order
#: service computes it for the order).
RECORDED = (
    "(SELECT order_id, md5(string_agg(CAST(product_id AS text) || ':' || "
    "CAST(quantity AS text) || ':' || CAST(user_id AS text), ',' ORDER BY product_id)) "
    "AS fingerprint FROM interactions GROUP BY order_id) AS recorded"
)


class OrderFeed(Protocol):
    """The order service's side (over RPC in the service)."""

    def digest(self) -> reconcile.Digest: ...

    def versions(self, bucket: str) -> dict[str, str]: ...

    def purchases(self, order_ids: list[str]) -> list[dict[str, Any]]: ...


def find_drift(session: Session, orders: OrderFeed) -> reconcile.Drift:
    return reconcile.compare_with_table(
        session, orders, RECORDED, "order_id", "fingerprint", ordered=False
    )


def reconcile_purchases(session: Session, orders: OrderFeed, *, repair: bool) -> dict[str, Any]:
    """Finds the drift and, if ``repair``, repairs it (committing); returns the report."""
    return reconcile.settle(
        COPY,
        find_drift(session, orders),
        (lambda drift: _repair(session, orders, drift)) if repair else None,
    )


def _repair(session: Session, orders: OrderFeed, drift: reconcile.Drift) -> int:
    repaired = 0
    wanted = drift.missing + drift.stale
    for start in range(0, len(wanted), FETCH_BATCH):
        batch = wanted[start : start + FETCH_BATCH]
        found = {order["id"]: order for order in orders.purchases(batch)}
        for order_id in batch:
            recommend.forget_order(session, order_id)
            if order_id in found:
                recommend.record_order(session, found[order_id], found[order_id]["paid_at"])
            repaired += 1
        session.commit()
    for order_id in drift.extra:
        repaired += 1 if recommend.forget_order(session, order_id) else 0
    session.commit()
    return repaired
