"""Rebuilding the aggregates from the order history (``bookstore analytics-backfill``).

The orders come from svc_order over RPC, a page at a time (its database is its own);
each order's history becomes the facts its events would have given
(:func:`svc_analytics.domain.facts_of_order`), applied by the same code as the live
events, in event time, whatever the watermark (``replay``). Everything happens in one
transaction that starts by emptying the aggregates: live handlers wait on the clock row
meanwhile, then find every order already counted and skip it, so nothing counts twice.
Windows the watermark has passed are closed without announcing them again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy.orm import Session

from common.db import utcnow
from svc_analytics import domain, ingest


def backfill(
    session: Session,
    pages: Iterable[list[dict[str, Any]]],
    settings: domain.Settings,
    progress: Callable[[int], None] = lambda orders: None,
) -> dict[str, Any]:
    """Rebuilds from ``pages`` of orders (svc_order's ``list_orders`` items) and commits."""
    started = time.monotonic()
    ingest.lock_clock(session)  # first: live batches wait here, not on the TRUNCATE
    ingest.reset(session)
    orders = facts = 0
    for page in pages:
        found = [fact for order in page for fact in domain.facts_of_order(order)]
        ingest.apply_facts(session, found, settings, replay=True)
        orders += len(page)
        facts += len(found)
        progress(len(page))
    closed = ingest.close_windows(session, settings, utcnow(), announce=False)
    session.commit()
    return {
        "orders": orders,
        "facts": facts,
        "windows_closed": len(closed),
        "seconds": round(time.monotonic() - started, 2),
    }


def order_pages(
    list_orders: Callable[[str | None], dict[str, Any]],
) -> Iterable[list[dict[str, Any]]]:
    """Every order, following svc_order's cursors (``list_orders(cursor)``)."""
    cursor = None
    while True:
        page = list_orders(cursor)
        yield page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return
