"""svc_analytics's rules without a broker or a database: windows in event time, the
watermark and lateness, counting each order once, refunds, ranges, anomaly scores and
the chart (docs/decisions/0130, 0132)."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from common.errors import InvalidParameter
from svc_analytics import anomalies, chart, domain, reconcile
from svc_analytics.domain import (
    CORRECTION,
    ON_TIME,
    TOO_LATE,
    Fact,
    Line,
    Settings,
    aggregate,
    fact_of,
    lateness_of,
    parse_range,
    watermark,
    window_start,
)

T0 = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
SETTINGS = Settings(timedelta(hours=1), timedelta(seconds=10), timedelta(seconds=60))


def paid(order_id: str, at: datetime, amount: int = 3000, country: str = "GB") -> Fact:
    return Fact(
        "paid",
        at,
        order_id,
        "EUR",
        amount,
        (Line("p1", "A book", 2, amount),),
        country,
    )


def test_a_fact_lands_in_the_five_minute_window_of_its_event_time():
    assert window_start(T0 + timedelta(minutes=7, seconds=59)) == T0 + timedelta(minutes=5)
    assert window_start(T0) == T0
    assert window_start(T0 - timedelta(microseconds=1)) == T0 - timedelta(minutes=5)


def test_the_watermark_trails_the_newest_event_and_wall_clock_moves_it_when_idle():
    assert watermark(None, SETTINGS) is None
    assert watermark(T0, SETTINGS) == T0 - timedelta(seconds=10)
    later = T0 + timedelta(minutes=10)
    assert watermark(T0, SETTINGS, now=later) == later - timedelta(seconds=70)
    # Wall-clock time never pulls it back behind the events.
    assert watermark(later, SETTINGS, now=T0) == later - timedelta(seconds=10)


def test_lateness_open_windows_corrections_and_too_late():
    mark = T0 + timedelta(hours=2)
    assert lateness_of(window_start(mark), mark, SETTINGS) == ON_TIME
    assert lateness_of(T0 + timedelta(hours=1, minutes=30), mark, SETTINGS) == CORRECTION
    # Ends 1 h 0 min before the mark: exactly at the allowed lateness is too late.
    assert lateness_of(T0 + timedelta(minutes=55), mark, SETTINGS) == TOO_LATE
    assert lateness_of(T0, None, SETTINGS) == ON_TIME


def test_an_order_is_counted_once_whatever_envelopes_name_it():
    batch = aggregate([paid("o1", T0), paid("o1", T0 + timedelta(minutes=1))], {}, None, SETTINGS)
    assert batch.windows[(T0, "EUR")].orders == 1
    assert batch.skipped == 1
    known = {"o1": batch.orders["o1"]}
    again = aggregate([paid("o1", T0)], known, None, SETTINGS)
    assert not again.windows and again.skipped == 1


def test_a_too_late_order_goes_to_the_late_tally_and_so_does_its_refund():
    mark = T0 + timedelta(hours=3)
    batch = aggregate([paid("o1", T0)], {}, mark, SETTINGS)
    assert not batch.windows and not batch.products
    assert batch.late[(T0, "EUR")].orders == 1
    refund = Fact("refund", mark, "o1", "EUR", 500)
    after = aggregate([refund], batch.orders, mark, SETTINGS)
    assert after.late[(T0, "EUR")].refunds == 500 and not after.windows


def test_a_refund_corrects_the_window_of_its_order_even_long_after():
    batch = aggregate([paid("o1", T0)], {}, None, SETTINGS)
    refund = Fact("refund", T0 + timedelta(days=3), "o1", "EUR", 1000)
    later = aggregate([refund], batch.orders, T0 + timedelta(days=3), SETTINGS)
    assert later.windows[(T0, "EUR")].refunds == 1000
    assert later.orders["o1"].refunded == 1000
    assert batch.orders["o1"].refunded == 0, "the known state is not changed in place"


def test_a_refund_before_its_order_is_seen_comes_with_the_order():
    refund = Fact("refund", T0 + timedelta(minutes=1), "o1", "EUR", 700)
    first = aggregate([refund], {}, None, SETTINGS)
    assert not first.windows and first.orders["o1"].counted is None
    second = aggregate([paid("o1", T0)], first.orders, None, SETTINGS)
    assert second.windows[(T0, "EUR")].refunds == 700
    assert second.windows[(T0, "EUR")].orders == 1


def test_products_countries_and_checkouts_per_window():
    checkout = Fact("checkout", T0, "o2", "EUR", 1000)
    batch = aggregate(
        [paid("o1", T0, country="FR"), checkout, paid("o3", T0, country=None)], {}, None, SETTINGS
    )
    assert batch.windows[(T0, "EUR")].checkouts == 1
    assert batch.products[(T0, "EUR", "p1")] == [4, 6000]
    assert batch.countries[(T0, "EUR", "FR")] == [1, 3000]
    assert batch.countries[(T0, "EUR", domain.UNKNOWN_COUNTRY)] == [1, 3000]


def test_replay_ignores_the_watermark():
    batch = aggregate([paid("o1", T0)], {}, T0 + timedelta(days=30), SETTINGS, replay=True)
    assert batch.windows[(T0, "EUR")].orders == 1


def _envelope(kind: str, data: dict, at: datetime = T0) -> dict:
    return {"id": str(uuid.uuid4()), "type": kind, "time": at.isoformat(), "data": data}


def test_facts_read_from_order_and_payment_envelopes():
    order_id = str(uuid.uuid4())
    fact = fact_of(
        _envelope(
            "order.paid",
            {
                "id": order_id,
                "total": {"amount": 2500, "currency": "EUR"},
                "shipping_address": {"country": "gb"},
                "items": [
                    {
                        "product_id": "p",
                        "quantity": 2,
                        "title": "T",
                        "unit_price": {"amount": 1000, "currency": "EUR"},
                        "line_total": {"amount": 2000, "currency": "EUR"},
                    }
                ],
            },
        )
    )
    assert (fact.kind, fact.amount, fact.country, fact.lines[0].amount) == (
        "paid",
        2500,
        "GB",
        2000,
    )
    refund = fact_of(
        _envelope("payment.refunded", {"order_id": order_id, "currency": "EUR", "refund_amount": 5})
    )
    assert (refund.kind, refund.order_id, refund.amount) == ("refund", order_id, 5)


@pytest.mark.parametrize(
    "data",
    [{}, {"id": "x", "total": {"amount": 1, "currency": "euro"}, "items": []}, {"items": None}],
)
def test_an_unreadable_envelope_is_malformed(data):
    with pytest.raises(domain.MalformedEvent):
        fact_of(_envelope("order.paid", data))


def test_ranges_are_checked_and_rounded_to_whole_buckets():
    span = parse_range("2026-12-07T10:07:00Z", "2026-12-07T12:01:00Z", "1h", "EUR")
    assert (span.start, span.end) == (T0 - timedelta(hours=2), T0 + timedelta(hours=1))
    bad = [
        ("2026-12-07T10:00:00Z", "2026-12-07T09:00:00Z", "1h", "EUR", "end"),
        ("yesterday", "2026-12-07T09:00:00Z", "1h", "EUR", "start"),
        ("2026-12-07T10:00:00Z", "2026-12-08T09:00:00Z", "7m", "EUR", "granularity"),
        ("2026-12-07T10:00:00Z", "2026-12-08T09:00:00Z", "1h", "eur", "currency"),
        ("2020-01-01T00:00:00Z", "2026-12-08T09:00:00Z", "5m", "EUR", "granularity"),
        # Not a currency, though shaped like one (the fuzzer's AAA).
        ("2026-12-07T10:00:00Z", "2026-12-08T09:00:00Z", "1h", "AAA", "currency"),
        # Before year 1 once in UTC, and past year 9999 once rounded up to a whole day.
        ("0001-01-01T00:10:00+01:29", "2000-01-01T00:05:06Z", "1h", "EUR", "start"),
        ("2026-12-07T10:00:00Z", "9999-12-31T23:59:00Z", "1d", "EUR", "end"),
    ]
    for start, end, granularity, currency, parameter in bad:
        with pytest.raises(InvalidParameter) as raised:
            parse_range(start, end, granularity, currency)
        assert raised.value.extensions == {"parameter": parameter}


def test_rankings_and_totals_may_span_more_buckets_than_a_series():
    span = parse_range("2026-01-01T00:00:00Z", "2026-12-01T00:00:00Z", "5m", "EUR", series=False)
    assert span.end - span.start == timedelta(days=334)


def test_derived_figures():
    figures = domain.figures({"orders": 3, "units": 5, "gross": 1001, "refunds": 1, "checkouts": 4})
    assert figures["net"] == 1000
    assert figures["average_order_value"] == 334  # 333.67 rounded half up
    assert figures["conversion_bp"] == 7500
    assert (
        domain.figures({"orders": 0, "units": 0, "gross": 0, "refunds": 0})["average_order_value"]
        == 0
    )


def test_robust_scores_flag_drops_and_spikes_not_noise():
    rng = random.Random(4)
    samples = [float(round(rng.gauss(40, 6))) for _ in range(96)]
    assert not anomalies.is_anomalous("orders", anomalies.robust_score(44, samples, counts=True))
    drop = anomalies.robust_score(8, samples, counts=True)
    assert anomalies.is_anomalous("orders", drop) and drop.direction == "drop"
    spike = anomalies.robust_score(120, samples, counts=True)
    assert anomalies.is_anomalous("orders", spike) and spike.direction == "spike"
    assert anomalies.robust_score(120, samples[:10]) is None, "too few samples"
    # Quiet hours: one order more than usual is no alarm, though the MAD is 0.
    quiet = [1.0] * 60 + [2.0] * 36
    assert not anomalies.is_anomalous("orders", anomalies.robust_score(3, quiet, counts=True))


def test_the_evaluation_finds_most_injected_anomalies_and_few_false_ones():
    report = anomalies.evaluate(weeks=10, injections=60, seed=5)
    assert report["injected"] == 60
    assert report["precision"] >= 0.8
    assert report["by_kind"]["spike"]["found"] > report["by_kind"]["spike"]["injected"] / 2


def test_the_chart_marks_anomalous_buckets():
    sales = {
        "start": "2026-12-07T12:00:00Z",
        "end": "2026-12-07T12:10:00Z",
        "granularity": "5m",
        "currency": "EUR",
        "items": [
            {
                "start": "2026-12-07T12:00:00Z",
                "end": "2026-12-07T12:05:00Z",
                "orders": 2,
                "gross": 500,
            },
            {
                "start": "2026-12-07T12:05:00Z",
                "end": "2026-12-07T12:10:00Z",
                "orders": 9,
                "gross": 90,
            },
        ],
    }
    svg = chart.render(sales, [{"window_start": "2026-12-07T12:05:00Z"}])
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert svg.count('class="orders anomaly"') == 1 and svg.count("anomaly-marker") == 1
    assert "<polyline" in svg


def test_cumulative_refunds_count_what_is_new_whatever_the_order_they_come_in():
    batch = aggregate([paid("o1", T0)], {}, None, SETTINGS)

    def refund(total: int) -> Fact:
        return Fact("refund", T0 + timedelta(days=1), "o1", "EUR", total, cumulative=True)

    later = aggregate([refund(800), refund(300), refund(800)], batch.orders, None, SETTINGS)
    assert later.windows[(T0, "EUR")].refunds == 800
    assert later.skipped == 2


def test_a_checkout_counts_once_per_order():
    checkout = Fact("checkout", T0, "o1", "EUR", 1000)
    batch = aggregate([checkout, checkout], {}, None, SETTINGS)
    assert batch.windows[(T0, "EUR")].checkouts == 1
    again = aggregate([checkout], batch.orders, None, SETTINGS)
    assert not again.windows and again.skipped == 1


def test_an_orders_history_gives_the_facts_its_events_gave():
    order = {
        "id": "o1",
        "total": {"amount": 2500, "currency": "EUR"},
        "items": [{"product_id": "p", "quantity": 1, "line_total": {"amount": 2500}}],
        "shipping_address": {"country": "FR"},
        "created_at": "2026-12-07T11:59:58Z",
        "paid_at": "2026-12-07T12:00:01Z",
        "payment": {"refunded_amount": 1000},
    }
    checkout, paid_fact, refund = domain.facts_of_order(order)
    assert (checkout.kind, window_start(checkout.time)) == ("checkout", T0 - timedelta(minutes=5))
    assert (paid_fact.kind, window_start(paid_fact.time), paid_fact.country) == ("paid", T0, "FR")
    assert (refund.amount, refund.cumulative) == (1000, True)
    unpaid = domain.facts_of_order({**order, "paid_at": None})
    assert [fact.kind for fact in unpaid] == ["checkout"]
    # The live event gives the same moment: the order's own, not the envelope's.
    envelope = _envelope("order.paid", order, at=T0 + timedelta(minutes=9))
    assert fact_of(envelope).time == paid_fact.time


def test_reconciliation_expects_what_an_orders_events_leave_and_repairs_only_what_was_missed():
    """svc_analytics/reconcile.py: the record an order's facts leave is the one expected
    of it, and re-applying them to a record that missed the refund adds only the refund."""
    order = {
        "id": "o1",
        "total": {"amount": 2500, "currency": "EUR"},
        "items": [{"product_id": "p", "quantity": 1, "line_total": {"amount": 2500}}],
        "created_at": "2026-12-07T11:59:58Z",
        "paid_at": "2026-12-07T12:00:01Z",
        "payment": {"refunded_amount": 1000},
    }
    assert reconcile.expected_record(order) == ("EUR", T0, 1000)
    assert reconcile.expected_record({**order, "paid_at": None}) is None
    checkout, paid_fact, refund = domain.facts_of_order(order)
    counted = aggregate([checkout, paid_fact, refund], {}, None, SETTINGS)
    assert reconcile.record_of(counted.orders["o1"]) == reconcile.expected_record(order)

    # The refund event was lost: the record differs, and the repair adds just the refund.
    missed = aggregate([checkout, paid_fact], {}, None, SETTINGS).orders
    assert reconcile.record_of(missed["o1"]) == ("EUR", T0, 0)
    repair = aggregate(domain.facts_of_order(order), missed, T0 + timedelta(hours=2), SETTINGS)
    assert reconcile.record_of(repair.orders["o1"]) == reconcile.expected_record(order)
    assert dict(repair.windows) == {(T0, "EUR"): domain.Totals(refunds=1000)}
    assert repair.skipped == 2  # placed and paid were counted already
    # Only placed (its order.paid lost): not a counted record yet.
    placed = aggregate([checkout], {}, None, SETTINGS).orders
    assert reconcile.record_of(placed["o1"]) is None
