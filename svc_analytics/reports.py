"""What admins read: the windows rolled up over a range (svc_analytics/domain.py checks
the range). Every report is one SQL query over the 5-minute rows; hours and days are
``date_bin`` buckets of them (docs/decisions/0130)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from common.db import isoformat
from common.errors import InvalidParameter
from svc_analytics import domain
from svc_analytics.domain import Range

MAX_TOP = 100


def sales(session: Session, span: Range) -> dict[str, Any]:
    """One row per bucket of the range, empty buckets included (zeros)."""
    rows = session.execute(
        text(
            """
            WITH buckets AS (
              SELECT generate_series(:start, :end - :step, :step) AS bucket
            ), totals AS (
              SELECT date_bin(:step, start, :origin) AS bucket,
                     sum(orders) AS orders, sum(units) AS units, sum(gross) AS gross,
                     sum(refunds) AS refunds, sum(checkouts) AS checkouts,
                     bool_and(closed_at IS NOT NULL) AS closed
                FROM windows
               WHERE currency = :currency AND start >= :start AND start < :end
               GROUP BY 1
            ), late AS (
              SELECT date_bin(:step, start, :origin) AS bucket, sum(orders) AS late_orders
                FROM late_tally
               WHERE currency = :currency AND start >= :start AND start < :end
               GROUP BY 1
            )
            SELECT buckets.bucket, coalesce(orders, 0) AS orders, coalesce(units, 0) AS units,
                   coalesce(gross, 0) AS gross, coalesce(refunds, 0) AS refunds,
                   coalesce(checkouts, 0) AS checkouts, coalesce(late_orders, 0) AS late_orders,
                   coalesce(closed, false) AS closed
              FROM buckets
              LEFT JOIN totals USING (bucket)
              LEFT JOIN late USING (bucket)
             ORDER BY buckets.bucket
            """
        ),
        _parameters(span),
    ).all()
    items = []
    for row in rows:
        totals = {name: int(getattr(row, name)) for name in domain_counters()}
        items.append(
            {
                "start": isoformat(row.bucket),
                "end": isoformat(row.bucket + span.step),
                **domain.figures(totals),
                "late_orders": int(row.late_orders),
                "closed": bool(row.closed),
            }
        )
    return {**_describe(span), "items": items, "totals": _sum(items)}


def domain_counters() -> tuple[str, ...]:
    return ("orders", "units", "gross", "refunds", "checkouts")


def _sum(items: list[dict[str, Any]]) -> dict[str, int]:
    totals = {name: sum(item[name] for item in items) for name in domain_counters()}
    return {**domain.figures(totals), "late_orders": sum(item["late_orders"] for item in items)}


def top_products(session: Session, span: Range, limit: int = 10) -> dict[str, Any]:
    limit = _limit(limit)
    rows = session.execute(
        text(
            """
            SELECT w.product_id, p.title, sum(w.units) AS units, sum(w.revenue) AS revenue
              FROM window_products AS w
              LEFT JOIN products AS p USING (product_id)
             WHERE w.currency = :currency AND w.start >= :start AND w.start < :end
             GROUP BY w.product_id, p.title
             ORDER BY units DESC, revenue DESC, w.product_id
             LIMIT :limit
            """
        ),
        {**_parameters(span), "limit": limit},
    ).all()
    return {
        **_describe(span),
        "items": [
            {
                "product_id": str(row.product_id),
                "title": row.title,
                "units": int(row.units),
                "revenue": int(row.revenue),
            }
            for row in rows
        ],
    }


def regions(session: Session, span: Range) -> dict[str, Any]:
    rows = session.execute(
        text(
            """
            SELECT country, sum(orders) AS orders, sum(revenue) AS revenue
              FROM window_countries
             WHERE currency = :currency AND start >= :start AND start < :end
             GROUP BY country
             ORDER BY revenue DESC, country
            """
        ),
        _parameters(span),
    ).all()
    return {
        **_describe(span),
        "items": [
            {"country": row.country, "orders": int(row.orders), "revenue": int(row.revenue)}
            for row in rows
        ],
    }


DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def peak_hours(session: Session, span: Range) -> dict[str, Any]:
    """Orders and revenue by day of the week and hour of the day (UTC): the heat map,
    all 168 cells, busiest first in ``peaks``."""
    rows = session.execute(
        text(
            """
            SELECT extract(isodow FROM start AT TIME ZONE 'UTC')::int AS day,
                   extract(hour FROM start AT TIME ZONE 'UTC')::int AS hour,
                   sum(orders) AS orders, sum(gross) AS gross
              FROM windows
             WHERE currency = :currency AND start >= :start AND start < :end
             GROUP BY 1, 2
            """
        ),
        _parameters(span),
    ).all()
    found = {(row.day, row.hour): (int(row.orders), int(row.gross)) for row in rows}
    items = [
        {
            "day": DAYS[day - 1],
            "hour": hour,
            "orders": found.get((day, hour), (0, 0))[0],
            "gross": found.get((day, hour), (0, 0))[1],
        }
        for day in range(1, 8)
        for hour in range(24)
    ]
    peaks = sorted((item for item in items if item["orders"]), key=lambda i: -i["orders"])[:5]
    return {**_describe(span), "items": items, "peaks": peaks}


def anomalies(session: Session, span: Range) -> dict[str, Any]:
    rows = session.execute(
        text(
            """
            SELECT start, metric, value, baseline, score, direction, detected_at
              FROM anomalies
             WHERE currency = :currency AND start >= :start AND start < :end
             ORDER BY start, metric
            """
        ),
        _parameters(span),
    ).all()
    return {
        **_describe(span),
        "items": [
            {
                "window_start": isoformat(row.start),
                "window_end": isoformat(row.start + domain.WINDOW),
                "metric": row.metric,
                "value": row.value,
                "baseline": row.baseline,
                "score": round(row.score, 3),
                "direction": row.direction,
                "detected_at": isoformat(row.detected_at),
            }
            for row in rows
        ],
    }


def status(session: Session) -> dict[str, Any]:
    """The watermark and the open windows (for ping and operators)."""
    row = session.execute(
        text(
            "SELECT (SELECT watermark FROM clock WHERE id = 1) AS watermark, "
            "(SELECT max_event_time FROM clock WHERE id = 1) AS max_event_time, "
            "(SELECT count(*) FROM windows WHERE closed_at IS NULL) AS open_windows"
        )
    ).one()
    return {
        "watermark": isoformat(row.watermark),
        "max_event_time": isoformat(row.max_event_time),
        "open_windows": int(row.open_windows),
    }


def _limit(limit: int | None) -> int:
    if limit is None:
        return 10
    if not 1 <= int(limit) <= MAX_TOP:
        raise InvalidParameter(f"limit must be 1 to {MAX_TOP}.", {"parameter": "limit"})
    return int(limit)


def _parameters(span: Range) -> dict[str, Any]:
    return {
        "start": span.start,
        "end": span.end,
        "step": span.step,
        "currency": span.currency,
        "origin": domain.EPOCH,
    }


def _describe(span: Range) -> dict[str, Any]:
    return {
        "start": isoformat(span.start),
        "end": isoformat(span.end),
        "granularity": span.granularity,
        "currency": span.currency,
    }
