"""Business analytics through the gateway with the real services: orders placed and paid
show in the admin's sales (JSON and CSV), top products, regions, peak hours and chart;
a duplicated, a replayed and a too-late event do not double count; customers get 403
and bad ranges 400 (docs/decisions/0130)."""

from __future__ import annotations

import copy
import csv
import io
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from common.db import isoformat
from common.events import EnvelopePublisher
from tests.e2e.test_checkout import checkout, fill, shopper, stocked_book
from tests.support import assert_problem, bookstore_cli, eventually, outbox_events

SALES = "/admin/analytics/sales"


def _range(hours: int = 6) -> dict[str, str]:
    now = datetime.now(UTC)
    return {
        "start": isoformat(now - timedelta(hours=hours)),
        "end": isoformat(now + timedelta(hours=1)),
        "currency": "EUR",
    }


def _sales(api, **params):
    response = api.get(SALES, params={**_range(), "granularity": "1h", **params}, token=api.admin)
    assert response.status_code == 200, response.text
    return response.json()


def _paid_orders(api, count: int) -> list[dict]:
    book = stocked_book(api, on_hand=10, amount=1500)
    token, address_id = shopper(api)
    orders = []
    for _ in range(count):
        fill(api, token, book, 2)
        placed = checkout(api, token, address_id)
        assert placed.status_code == 201 and placed.json()["status"] == "PAID", placed.text
        orders.append(placed.json())
    return orders


def _counted(api, orders: int, gross: int) -> dict:
    def counted():
        report = _sales(api)
        totals = report["totals"]
        assert (totals["orders"], totals["gross"]) == (orders, gross), totals
        return report

    return eventually(counted)


def test_paid_orders_show_in_the_admin_reports_and_as_csv(api):
    orders = _paid_orders(api, 2)
    gross = sum(order["total"]["amount"] for order in orders)
    report = _counted(api, 2, gross)
    totals = report["totals"]
    assert totals["units"] == 4 and totals["average_order_value"] == gross // 2
    assert totals["checkouts"] == 2 and totals["conversion_bp"] == 10_000

    response = api.get(
        SALES,
        params={**_range(), "granularity": "1h"},
        token=api.admin,
        headers={"Accept": "text/csv"},
    )
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == len(report["items"])
    assert sum(int(row["orders"]) for row in rows) == 2
    assert rows[0].keys() >= {"start", "orders", "gross", "net", "average_order_value"}

    products = api.get("/admin/analytics/top-products", params=_range(), token=api.admin).json()[
        "items"
    ]
    assert products[0]["units"] == 4 and products[0]["title"] == orders[0]["items"][0]["title"]
    regions = api.get("/admin/analytics/regions", params=_range(), token=api.admin).json()
    assert regions["items"] == [{"country": "GB", "orders": 2, "revenue": gross}]
    heat = api.get("/admin/analytics/peak-hours", params=_range(), token=api.admin).json()
    assert sum(cell["orders"] for cell in heat["items"]) == 2
    peaks_csv = api.get(
        "/admin/analytics/peak-hours",
        params=_range(),
        token=api.admin,
        headers={"Accept": "text/csv"},
    )
    assert peaks_csv.text.splitlines()[0] == "day,hour,orders,gross"
    assert len(peaks_csv.text.splitlines()) == 1 + 168
    chart = api.get(
        "/admin/analytics/sales-chart", params={**_range(), "granularity": "5m"}, token=api.admin
    )
    assert chart.status_code == 200
    assert chart.headers["Content-Type"].startswith("image/svg+xml")
    assert chart.text.startswith("<svg") and "polyline" in chart.text


def test_a_duplicated_a_replayed_and_a_too_late_event_do_not_count_twice(api):
    orders = _paid_orders(api, 1)
    gross = orders[0]["total"]["amount"]
    _counted(api, 1, gross)
    # The same envelope again (a redelivery), and the order's paid event under a new id
    # (a replay): neither counts twice.
    publish = EnvelopePublisher(api.platform.amqp_uri, "order", {"AMQP_URI": api.platform.amqp_uri})
    paid = outbox_events(api.platform, "order", "order.paid")[0]
    publish(paid)
    publish({**copy.deepcopy(paid), "id": str(uuid.uuid4())})
    # A paid order from three hours ago, beyond the hour of allowed lateness: the late
    # tally, not the window. Then one the window still takes, proving the others went by.
    late = copy.deepcopy(paid)
    late["id"] = str(uuid.uuid4())
    late["data"]["id"] = str(uuid.uuid4())
    late["time"] = late["data"]["paid_at"] = isoformat(datetime.now(UTC) - timedelta(hours=3))
    publish(late)
    fresh = copy.deepcopy(paid)
    fresh["id"] = str(uuid.uuid4())
    fresh["data"]["id"] = str(uuid.uuid4())
    publish(fresh)

    def settled():
        report = _sales(api)
        assert report["totals"]["orders"] == 2, report["totals"]
        assert report["totals"]["late_orders"] == 1, report["totals"]
        return report

    report = eventually(settled)
    assert report["totals"]["gross"] == 2 * gross
    late_bucket = [item for item in report["items"] if item["late_orders"]]
    assert len(late_bucket) == 1 and late_bucket[0]["orders"] == 0


def test_customers_are_refused_and_bad_ranges_are_400(api):
    _, customer = api.platform.new_customer()
    assert_problem(api.get(SALES, params=_range(), token=customer), 403)
    assert_problem(api.get("/admin/analytics/sales-chart", params=_range(), token=customer), 403)
    assert_problem(api.get(SALES, params=_range()), 401)
    for params in (
        {"granularity": "7m"},
        {"currency": "euro"},
        {"start": "yesterday"},
        {"end": isoformat(datetime.now(UTC) - timedelta(days=1))},
        {"start": "2020-01-01T00:00:00Z", "granularity": "5m"},
    ):
        response = api.get(SALES, params={**_range(), **params}, token=api.admin)
        assert_problem(response, 400)
    missing = {key: value for key, value in _range().items() if key != "currency"}
    assert_problem(api.get(SALES, params=missing, token=api.admin), 400)
    assert_problem(
        api.get("/admin/analytics/top-products", params={**_range(), "limit": 0}, token=api.admin),
        400,
    )


@pytest.mark.timeout(180)  # a subprocess, and three checkouts
def test_a_refund_corrects_its_orders_window_and_the_backfill_gives_the_live_numbers(api):
    orders = _paid_orders(api, 3)
    refunded = api.post(
        f"/admin/orders/{orders[0]['id']}/refunds",
        json={"reason": "goodwill", "amount": 700},
        token=api.admin,
    )
    assert refunded.status_code == 200, refunded.text
    gross = sum(order["total"]["amount"] for order in orders)

    def live():
        report = _sales(api, granularity="5m")
        assert (report["totals"]["orders"], report["totals"]["refunds"]) == (3, 700)
        return report

    before = eventually(live)
    assert before["totals"]["net"] == gross - 700
    regions = api.get("/admin/analytics/regions", params=_range(), token=api.admin).json()
    top = api.get("/admin/analytics/top-products", params=_range(), token=api.admin).json()
    rebuilt = bookstore_cli(api.platform, "analytics-backfill")
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert "rebuilt from 3 orders" in rebuilt.stdout
    assert "orders/s" in rebuilt.stderr or "3orders" in rebuilt.stderr.replace(" ", "")
    after = _sales(api, granularity="5m")
    assert [(i["orders"], i["gross"], i["refunds"], i["checkouts"]) for i in after["items"]] == [
        (i["orders"], i["gross"], i["refunds"], i["checkouts"]) for i in before["items"]
    ]
    assert api.get("/admin/analytics/regions", params=_range(), token=api.admin).json() == regions
    assert api.get("/admin/analytics/top-products", params=_range(), token=api.admin).json() == top
