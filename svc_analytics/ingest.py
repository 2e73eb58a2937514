"""Writing batches of facts into the windows, and closing windows as the watermark moves.

One transaction per batch: the claimed event ids, the window deltas, the orders' states,
the watermark and the events announcing corrections commit together (the outbox), so a
crash at any point either did all of a batch or none of it. The clock row is locked for
the batch: batches of several instances apply one after the other, each against the
watermark the previous one left.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Table, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from common.consumers import claim_unhandled
from common.db import isoformat, utcnow
from svc_analytics import anomalies, domain
from svc_analytics.domain import WINDOW, Batch, OrderState, Settings
from svc_analytics.models import (
    AnalyticsHandledEvent,
    AnalyticsOrder,
    Clock,
    LateTally,
    Product,
    Window,
    WindowCountry,
    WindowProduct,
    outbox,
)

COUNTERS = ("orders", "units", "gross", "refunds", "checkouts")


def ingest(
    session: Session,
    envelopes: Sequence[dict[str, Any]],
    settings: Settings,
    handler: str,
    *,
    replay: bool = False,
) -> dict[str, int]:
    """Applies the envelopes not handled before; the caller commits. Returns counts."""
    fresh = claim_unhandled(session, AnalyticsHandledEvent, envelopes, handler)
    facts = [domain.fact_of(envelope) for envelope in fresh]
    return apply_facts(session, facts, settings, replay=replay) | {
        "duplicates": len(envelopes) - len(fresh)
    }


def apply_facts(
    session: Session, facts: list[domain.Fact], settings: Settings, *, replay: bool = False
) -> dict[str, int]:
    clock = lock_clock(session)
    known = known_orders(session, {fact.order_id for fact in facts})
    batch = domain.aggregate(facts, known, clock.watermark, settings, replay=replay)
    corrected = _write(session, batch)
    if batch.max_event_time and (
        clock.max_event_time is None or batch.max_event_time > clock.max_event_time
    ):
        clock.max_event_time = batch.max_event_time
        mark = domain.watermark(clock.max_event_time, settings)
        if clock.watermark is None or mark > clock.watermark:
            clock.watermark = mark
    for row in corrected:
        outbox.add(session, "analytics.window.corrected", window_data(row))
    return {
        "facts": len(facts),
        "late": sum(totals.orders + totals.checkouts for totals in batch.late.values()),
        "corrected": len(corrected),
        "skipped": batch.skipped,
    }


def lock_clock(session: Session) -> Clock:
    session.execute(insert(Clock).values(id=1).on_conflict_do_nothing())
    return session.scalars(select(Clock).where(Clock.id == 1).with_for_update()).one()


def known_orders(session: Session, order_ids: set[str]) -> dict[str, OrderState]:
    if not order_ids:
        return {}
    rows = session.scalars(
        select(AnalyticsOrder).where(
            AnalyticsOrder.order_id.in_([uuid.UUID(order_id) for order_id in order_ids])
        )
    )
    return {
        str(row.order_id): OrderState(
            str(row.order_id),
            row.currency,
            row.window_start,
            row.counted,
            row.refunded,
            row.placed,
        )
        for row in rows
    }


def _upsert(
    session: Session, table: Table, keys: tuple[str, ...], changes: dict[str, Any], rows: list
) -> None:
    """INSERT ... ON CONFLICT DO UPDATE of many rows in one statement, compiled once and
    cached. (The RETURNING is what makes SQLAlchemy send the rows as pages of VALUES
    lists, "insertmanyvalues"; without it psycopg2 sends one statement per row.)"""
    if rows:
        statement = insert(table)
        session.execute(
            statement.on_conflict_do_update(
                index_elements=list(keys),
                set_={name: change(table, statement.excluded) for name, change in changes.items()},
            ).returning(table.c[keys[0]]),
            rows,
        )


def _upsert_adding(
    session: Session, table: Table, keys: tuple[str, ...], columns: tuple[str, ...], rows: list
) -> None:
    """:func:`_upsert` adding ``columns`` to those of an existing row."""

    def adding(name: str) -> Any:
        return lambda table, excluded: table.c[name] + excluded[name]

    _upsert(session, table, keys, {name: adding(name) for name in columns}, rows)


def _replacing(name: str) -> Any:
    return lambda table, excluded: excluded[name]


def _write(session: Session, batch: Batch) -> list[Any]:
    """Writes the deltas; returns the closed windows they changed (now corrected)."""
    window_key = ("start", "currency")
    windows = [
        {"start": start, "currency": currency, **vars(totals)}
        for (start, currency), totals in batch.windows.items()
    ]
    _upsert_adding(session, Window.__table__, window_key, COUNTERS, windows)
    late = [
        {"start": start, "currency": currency, **vars(totals)}
        for (start, currency), totals in batch.late.items()
    ]
    _upsert_adding(session, LateTally.__table__, window_key, COUNTERS, late)
    products = [
        {
            "start": start,
            "currency": currency,
            "product_id": product,
            "units": units,
            "revenue": revenue,
        }
        for (start, currency, product), (units, revenue) in batch.products.items()
    ]
    _upsert_adding(
        session,
        WindowProduct.__table__,
        (*window_key, "product_id"),
        ("units", "revenue"),
        products,
    )
    countries = [
        {
            "start": start,
            "currency": currency,
            "country": country,
            "orders": orders,
            "revenue": revenue,
        }
        for (start, currency, country), (orders, revenue) in batch.countries.items()
    ]
    _upsert_adding(
        session, WindowCountry.__table__, (*window_key, "country"), ("orders", "revenue"), countries
    )
    _upsert(
        session,
        Product.__table__,
        ("product_id",),
        {"title": _replacing("title")},
        [{"product_id": pid, "title": title[:500]} for pid, title in batch.titles.items()],
    )
    changed = ("window_start", "counted", "refunded", "placed")
    _upsert(
        session,
        AnalyticsOrder.__table__,
        ("order_id",),
        {name: _replacing(name) for name in changed},
        [
            {
                "order_id": uuid.UUID(state.order_id),
                "currency": state.currency,
                "window_start": state.window_start,
                "counted": state.counted,
                "refunded": state.refunded,
                "placed": state.placed,
            }
            for state in batch.orders.values()
        ],
    )
    if not windows:
        return []
    table = Window.__table__
    return list(
        session.execute(
            update(table)
            .where(
                table.c.closed_at.is_not(None),
                tuple_(table.c.start, table.c.currency).in_(list(batch.windows)),
            )
            .values(revision=table.c.revision + 1)
            .returning(table)
        ).all()
    )


def window_data(row: Any) -> dict[str, Any]:
    """A window as its events and the API carry it."""
    totals = {name: int(getattr(row, name)) for name in COUNTERS}
    return {
        "window_start": isoformat(row.start),
        "window_end": isoformat(row.start + WINDOW),
        "currency": row.currency,
        "revision": int(row.revision),
        **domain.figures(totals),
    }


#: Empty windows are filled in (so that a quiet window closes and is scored) at most
#: this far behind the watermark.
MAX_FILL = 7 * 24 * 12


def close_windows(
    session: Session, settings: Settings, now: datetime | None = None, *, announce: bool = True
) -> list[dict[str, Any]]:
    """Moves the watermark on by wall-clock time (``now``) and closes every window it
    passed, empty ones included, publishing ``analytics.window.closed`` for each
    (``announce``) and scoring it for anomalies. Returns the closed windows' data."""
    clock = lock_clock(session)
    mark = domain.watermark(clock.max_event_time, settings, now)
    if mark is None:
        return []
    if clock.watermark is None or mark > clock.watermark:
        clock.watermark = mark
    mark = clock.watermark
    last_start = domain.window_start(mark) - WINDOW
    if last_start + WINDOW > mark:
        last_start -= WINDOW
    _fill_empty_windows(session, last_start)
    table = Window.__table__
    rows = session.execute(
        update(table)
        .where(table.c.closed_at.is_(None), table.c.start <= last_start)
        .values(closed_at=utcnow())
        .returning(table)
    ).all()
    rows = sorted(rows, key=lambda row: (row.start, row.currency))
    closed = [window_data(row) for row in rows]
    if announce:
        for data in closed:
            outbox.add(session, "analytics.window.closed", data)
        for found in anomalies.score_windows(session, rows):
            outbox.add(session, "analytics.anomaly.detected", found)
    return closed


def _fill_empty_windows(session: Session, last_start: datetime) -> None:
    """Inserts the windows without any event between each currency's newest closed window
    and ``last_start`` (bounded by :data:`MAX_FILL`)."""
    session.execute(
        text(
            """
            INSERT INTO windows (start, currency, orders, units, gross, refunds, checkouts,
                                 revision)
            SELECT slot, span.currency, 0, 0, 0, 0, 0, 0
              FROM (SELECT currency,
                           greatest(coalesce(max(start) FILTER (WHERE closed_at IS NOT NULL),
                                             min(start)),
                                    :last_start - :max_fill * interval '5 minutes') AS since
                      FROM windows GROUP BY currency) AS span,
                   generate_series(span.since, :last_start, interval '5 minutes') AS slot
            ON CONFLICT DO NOTHING
            """
        ),
        {"last_start": last_start, "max_fill": MAX_FILL},
    )


def reset(session: Session) -> None:
    """Forgets every aggregate and the watermark (the backfill rebuilds them); the
    handled event ids stay, so events handled before are still skipped."""
    session.execute(
        text("TRUNCATE windows, late_tally, window_products, window_countries, orders, anomalies")
    )
    session.execute(update(Clock).values(max_event_time=None, watermark=None))
