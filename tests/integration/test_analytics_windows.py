"""svc_analytics's windows in its real (PostgreSQL) database, without a broker: events
handled once, late ones correcting or tallied, windows closed by the watermark with
their events in the outbox, refunds correcting closed windows, anomalies raised, the
reports, and the backfill giving the live numbers (docs/decisions/0130)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from common import contract
from common.errors import InvalidParameter
from ops import databases
from svc_analytics import backfill, domain, ingest, reports
from svc_analytics.domain import Settings
from tests import harness

T0 = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
SETTINGS = Settings(timedelta(hours=1), timedelta(seconds=10), timedelta(seconds=60))
HANDLER = "analytics.test"


@pytest.fixture(scope="module")
def engine():
    url = harness.test_database_url("analytics").replace("_analytics", "_analytics_windows")
    databases.prepare("analytics", url, recreate=True)
    engine = create_engine(url)
    yield engine
    engine.dispose()


@pytest.fixture
def session(engine, monkeypatch):
    # Every event analytics writes must be what openapi/asyncapi.yaml says.
    monkeypatch.setenv(contract.ENFORCE_ENV, "enforce")
    with engine.begin() as connection:
        connection.execute(
            text(
                "TRUNCATE windows, late_tally, window_products, window_countries, products, "
                "orders, clock, anomalies, handled_events, outbox"
            )
        )
    with Session(engine) as session:
        yield session


def paid(at: datetime, amount: int = 2000, quantity: int = 2, order_id: str | None = None):
    order_id = order_id or str(uuid.uuid4())
    price = {"amount": amount // quantity, "currency": "EUR"}
    return {
        "id": str(uuid.uuid4()),
        "type": "order.paid",
        "source": "order",
        "time": at.isoformat(),
        "version": 1,
        "data": {
            "id": order_id,
            "user_id": str(uuid.uuid4()),
            "status": "PAID",
            "items": [
                {
                    "product_id": "6a1b6f1e-0000-4000-8000-000000000001",
                    "title": "Dune",
                    "quantity": quantity,
                    "unit_price": price,
                    "line_total": {"amount": amount, "currency": "EUR"},
                }
            ],
            "total": {"amount": amount, "currency": "EUR"},
            "shipping_address": {"country": "DE"},
        },
    }


def refunded(order_id: str, at: datetime, amount: int):
    return {
        "id": str(uuid.uuid4()),
        "type": "payment.refunded",
        "source": "payment",
        "time": at.isoformat(),
        "version": 1,
        "data": {
            "payment_id": str(uuid.uuid4()),
            "order_id": order_id,
            "status": "refunded",
            "amount": 2000,
            "currency": "EUR",
            "refund_amount": amount,
            "fully_refunded": False,
        },
    }


def outbox(session, event_type):
    return list(
        session.scalars(
            text("SELECT envelope FROM outbox WHERE event_type = :t ORDER BY id"), {"t": event_type}
        )
    )


def window(session, start):
    return session.execute(
        text("SELECT * FROM windows WHERE start = :s AND currency = 'EUR'"), {"s": start}
    ).one()


def test_duplicates_late_events_corrections_and_closing(session):
    first = paid(T0 + timedelta(minutes=1))
    assert ingest.ingest(session, [first, first], SETTINGS, HANDLER)["facts"] == 1
    assert ingest.ingest(session, [first], SETTINGS, HANDLER)["duplicates"] == 1
    # The stream moves on 20 minutes: the 12:00 window closes, with its event.
    ingest.ingest(session, [paid(T0 + timedelta(minutes=20))], SETTINGS, HANDLER)
    ingest.close_windows(session, SETTINGS)
    session.commit()
    closed = [e["data"] for e in outbox(session, "analytics.window.closed")]
    assert closed[0]["window_start"] == "2026-12-07T12:00:00Z"
    assert closed[0]["orders"] == 1 and closed[0]["gross"] == 2000 and closed[0]["revision"] == 0
    # Empty windows between close too (a quiet window is a fact worth scoring).
    assert {c["window_start"] for c in closed} >= {"2026-12-07T12:05:00Z", "2026-12-07T12:10:00Z"}
    # A late event within the allowed lateness corrects its window, once.
    late = paid(T0 + timedelta(minutes=2), amount=1000, quantity=1)
    ingest.ingest(session, [late], SETTINGS, HANDLER)
    ingest.ingest(session, [late], SETTINGS, HANDLER)
    session.commit()
    assert window(session, T0).orders == 2 and window(session, T0).gross == 3000
    corrected = [e["data"] for e in outbox(session, "analytics.window.corrected")]
    assert len(corrected) == 1
    assert (corrected[0]["orders"], corrected[0]["gross"], corrected[0]["revision"]) == (2, 3000, 1)
    # Beyond the allowed lateness: the late tally, not the window.
    ingest.ingest(session, [paid(T0 + timedelta(hours=3))], SETTINGS, HANDLER)
    too_late = paid(T0 + timedelta(minutes=3), amount=5000)
    assert ingest.ingest(session, [too_late], SETTINGS, HANDLER)["late"] == 1
    session.commit()
    assert window(session, T0).orders == 2
    tally = session.execute(text("SELECT orders, gross FROM late_tally")).one()
    assert tuple(tally) == (1, 5000)


def test_a_refund_of_an_order_from_a_closed_window_corrects_it(session):
    order_id = str(uuid.uuid4())
    ingest.ingest(session, [paid(T0, order_id=order_id)], SETTINGS, HANDLER)
    ingest.ingest(session, [paid(T0 + timedelta(days=2))], SETTINGS, HANDLER)
    ingest.close_windows(session, SETTINGS)
    ingest.ingest(session, [refunded(order_id, T0 + timedelta(days=2), 500)], SETTINGS, HANDLER)
    session.commit()
    row = window(session, T0)
    assert (row.refunds, row.revision) == (500, 1)
    corrected = outbox(session, "analytics.window.corrected")[-1]["data"]
    assert (corrected["net"], corrected["refunds"]) == (1500, 500)


def test_reports_roll_windows_up_to_hours_and_days(session):
    envelopes = [paid(T0 + timedelta(minutes=minutes)) for minutes in (0, 3, 7, 65)]
    ingest.ingest(session, envelopes, SETTINGS, HANDLER)
    session.commit()
    span = domain.parse_range("2026-12-07T12:00:00Z", "2026-12-07T14:00:00Z", "1h", "EUR")
    sales = reports.sales(session, span)
    assert [item["orders"] for item in sales["items"]] == [3, 1]
    assert sales["totals"]["gross"] == 8000 and sales["totals"]["average_order_value"] == 2000
    five = reports.sales(
        session, domain.parse_range(span.start.isoformat(), "2026-12-07T12:15:00Z", "5m", "EUR")
    )
    assert [item["orders"] for item in five["items"]] == [2, 1, 0]
    top = reports.top_products(session, span, 5)["items"]
    assert top == [
        {
            "product_id": "6a1b6f1e-0000-4000-8000-000000000001",
            "title": "Dune",
            "units": 8,
            "revenue": 8000,
        }
    ]
    assert reports.regions(session, span)["items"] == [
        {"country": "DE", "orders": 4, "revenue": 8000}
    ]
    heat = reports.peak_hours(session, span)
    assert len(heat["items"]) == 168
    assert heat["peaks"][0] == {"day": "Mon", "hour": 12, "orders": 3, "gross": 6000}
    with pytest.raises(InvalidParameter):
        reports.top_products(session, span, 1000)


def test_a_drop_against_the_same_hour_of_past_weeks_is_an_anomaly(session):
    history = []
    for weeks in range(1, 9):
        for minutes in range(0, 60, 5):
            at = T0 - timedelta(weeks=weeks) + timedelta(minutes=minutes)
            history += [paid(at + timedelta(seconds=second)) for second in range(20)]
    ingest.ingest(session, history, SETTINGS, HANDLER, replay=True)
    ingest.close_windows(session, SETTINGS, announce=False)
    # This week: the 12:00 window has 2 orders where 20 is usual.
    ingest.ingest(session, [paid(T0), paid(T0 + timedelta(seconds=1))], SETTINGS, HANDLER)
    ingest.ingest(session, [paid(T0 + timedelta(minutes=20))], SETTINGS, HANDLER)
    ingest.close_windows(session, SETTINGS)
    session.commit()
    found = [e["data"] for e in outbox(session, "analytics.anomaly.detected")]
    drops = [a for a in found if a["window_start"] == "2026-12-07T12:00:00Z"]
    assert {a["metric"] for a in drops} == {"orders", "gross"}
    assert all(
        a["direction"] == "drop" and a["baseline"] >= 19 for a in drops if a["metric"] == "orders"
    )
    span = domain.parse_range("2026-12-07T12:00:00Z", "2026-12-07T13:00:00Z", "5m", "EUR")
    assert len(reports.anomalies(session, span)["items"]) == len(found)


def _snapshot(session):
    return [
        session.execute(text(f"SELECT * FROM {table} ORDER BY 1, 2, 3")).all()
        for table in ("window_products", "window_countries")
    ] + [
        session.execute(
            text(
                "SELECT start, currency, orders, units, gross, refunds, checkouts FROM windows "
                "WHERE orders > 0 OR checkouts > 0 ORDER BY 1, 2"
            )
        ).all()
    ]


def test_the_backfill_gives_the_numbers_the_live_events_gave(session):
    history = []
    live = []
    refunds = []  # they come hours later: after the orders, as in life
    for minutes in range(0, 600, 7):
        envelope = paid(T0 + timedelta(minutes=minutes), amount=1000 + minutes)
        order = {
            **envelope["data"],
            "created_at": (T0 + timedelta(minutes=minutes, seconds=-3)).isoformat(),
            "paid_at": envelope["time"],
        }
        created = {**envelope, "id": str(uuid.uuid4()), "type": "order.created"}
        created["data"] = {**order, "status": "PENDING_PAYMENT", "paid_at": None}
        live += [created, {**envelope, "data": order}]
        if minutes % 5 == 0:
            refund = refunded(order["id"], T0 + timedelta(hours=12), 300)
            refund["data"]["refunded_amount"] = 300
            refunds.append(refund)
            order = {**order, "payment": {"refunded_amount": 300}}
        history.append(order)
    live += refunds
    for offset in range(0, len(live), 40):
        ingest.ingest(session, live[offset : offset + 40], SETTINGS, HANDLER)
    session.commit()
    before = _snapshot(session)
    pages = [history[offset : offset + 25] for offset in range(0, len(history), 25)]
    seen = []
    summary = backfill.backfill(session, pages, SETTINGS, seen.append)
    assert summary["orders"] == len(history) and sum(seen) == len(history)
    assert _snapshot(session) == before
    # Live events of orders the backfill counted do not count again.
    assert ingest.ingest(session, live[-30:], SETTINGS, "analytics.another")["facts"] == 30
    session.commit()
    assert _snapshot(session) == before
