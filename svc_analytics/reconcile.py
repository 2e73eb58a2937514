"""The analytics windows against the order service: drift found by digest, repaired by
applying each order's current state as its live events would (common/reconcile.py,
docs/decisions/0143).

What analytics keeps of each paid order it counted (``orders``: its currency, the window
of its payment and all it has refunded) is fingerprinted the same way the order service
fingerprints its paid orders (svc_order/purchase_feed.py). An order analytics never
counted (its ``order.paid`` lost) is missing; one whose refund it missed is stale. Both
are repaired by the order's facts (:func:`svc_analytics.domain.facts_of_order`, what the
backfill reads) through the live ingest: what analytics counted already is skipped, the
rest lands in its window, and a closed window is corrected (``analytics.window.corrected``)
or, beyond the allowed lateness, the late tally is.

The record keeps no per-order amounts, so counts of another window or currency, or of an
order that was never paid (``extra``), cannot be taken back one order at a time: those
stay reported (not repaired) until ``bookstore analytics-backfill`` rebuilds everything.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.orm import Session

from common import reconcile
from svc_analytics import domain, ingest
from svc_analytics.domain import OrderState

COPY = "analytics_windows"
#: Orders fetched from the order service per call while repairing.
FETCH_BATCH = 500
#: One row per counted order: its id and the fingerprint of what analytics counted (as
#: the order service computes it for the order).
RECORDED = (
    "(SELECT order_id, md5(currency || ':' || "
    "CAST(CAST(extract(epoch FROM window_start) AS bigint) AS text) || ':' || "
    "CAST(refunded AS text)) AS fingerprint FROM orders WHERE counted IS NOT NULL) AS recorded"
)

#: What analytics should remember of a paid order: currency, window start, refunded.
Record = tuple[str, datetime, int]


class OrderFeed(reconcile.Source, Protocol):
    """The order service's side (over RPC in the service)."""

    def orders(self, order_ids: list[str]) -> list[dict[str, Any]]: ...


def expected_record(order: dict[str, Any]) -> Record | None:
    """What analytics should remember of ``order`` (as ``list_orders`` shows it) once its
    events are all counted; None for an order never paid (analytics counts no payment)."""
    if not order.get("paid_at"):
        return None
    paid = domain.order_fact("paid", order, domain.parse_time(order["paid_at"]))
    refunded = int((order.get("payment") or {}).get("refunded_amount") or 0)
    return (paid.currency, domain.window_start(paid.time), refunded)


def record_of(state: OrderState | None) -> Record | None:
    """What analytics remembers of a counted order (None: not counted)."""
    if state is None or state.counted is None or state.window_start is None:
        return None
    return (state.currency, state.window_start, state.refunded)


def find_drift(session: Session, orders: OrderFeed) -> reconcile.Drift:
    return reconcile.compare_with_table(
        session, orders, RECORDED, "order_id", "fingerprint", ordered=False
    )


def reconcile_windows(
    session: Session, orders: OrderFeed, settings: domain.Settings, *, repair: bool
) -> dict[str, Any]:
    """Finds the drift and, if ``repair``, repairs what can be (committing); returns the
    report, whose ``repaired`` counts the orders now counted as the order service says."""
    return reconcile.settle(
        COPY,
        find_drift(session, orders),
        (lambda drift: _repair(session, orders, drift, settings)) if repair else None,
    )


def _repair(
    session: Session, orders: OrderFeed, drift: reconcile.Drift, settings: domain.Settings
) -> int:
    repaired = 0
    wanted = drift.missing + drift.stale
    for start in range(0, len(wanted), FETCH_BATCH):
        found = orders.orders(wanted[start : start + FETCH_BATCH])
        facts = [fact for order in found for fact in domain.facts_of_order(order)]
        ingest.apply_facts(session, facts, settings)
        session.flush()
        now = ingest.known_orders(session, {order["id"] for order in found})
        repaired += sum(
            1 for order in found if record_of(now.get(order["id"])) == expected_record(order)
        )
        session.commit()
    return repaired
