"""Reconciliation of derived copies with their sources (common/reconcile.py):

- the search index with the catalog (svc_search/reconcile.py, docs/decisions/0063):
  ``index_status`` tells the truth about drift, and ``bookstore reconcile search-index``
  finds a deliberately deleted index row, a stale one and one the catalog withdrew
  without an event, and repairs them;
- the recommendation inputs with the order service's paid orders (svc_search/purchases.py,
  0140): lost, altered and refunded-without-an-event purchases are found and repaired,
  and a consumer that joins with nothing is backfilled by ``bookstore reconcile --all``;
- notify's recipients with auth's accounts (svc_notify/recipients.py, 0141): an account
  deleted while its ``user.deleted`` was lost, and a person auth never had, are forgotten
  as the event would have (waiting messages skipped, addresses scrubbed);
- the analytics windows with the order service's paid orders (svc_analytics/reconcile.py,
  0143): an order whose ``order.paid`` and one whose refund analytics never counted are
  found and counted as their events would have, and the sales report adds up again.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from common.config import REPO_ROOT
from common.db import isoformat
from tests.support import eventually, outbox_events, paid_order, refund


def _status(platform) -> dict:
    with platform.rpc(timeout=30) as rpc:
        return rpc.search.index_status()


def _cli(platform, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ops.cli", "reconcile", *args],
        env={**os.environ, "AMQP_URI": platform.amqp_uri},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _execute(platform, service: str, statement: str, **params) -> None:
    with platform.engine(service).begin() as connection:
        connection.execute(text(statement), params)


def test_drift_is_reported_and_repaired(api):
    platform = api.platform
    lost, stale, withdrawn, kept = (
        api.create_product(title=f"Reconciled {name}") for name in ("lost", "stale", "gone", "kept")
    )

    def in_sync() -> dict:
        status = _status(platform)
        assert status["catalog"]["in_sync"] is True and status["documents"] == 4, status
        return status

    assert eventually(in_sync)["status"] == "ok"

    # Three ways a copy drifts: a row lost, an update missed, a withdrawal never heard of.
    _execute(
        platform, "search", "DELETE FROM search_documents WHERE product_id = :id", id=lost["id"]
    )
    _execute(
        platform,
        "search",
        "UPDATE search_documents SET product_version = 0, title = 'Old title' "
        "WHERE product_id = :id",
        id=stale["id"],
    )
    _execute(
        platform,
        "catalog",
        "UPDATE products SET deleted_at = now() WHERE id = :id",
        id=withdrawn["id"],
    )

    status = _status(platform)
    assert status["status"] == "drift"
    assert {k: status["catalog"][k] for k in ("missing", "extra", "stale")} == {
        "missing": 1,
        "extra": 1,
        "stale": 1,
    }
    assert status["catalog"]["examples"]["missing"] == [lost["id"]]

    checked = _cli(platform, "search-index", "--check")
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert "1 missing, 1 extra, 1 stale; 0 repaired" in checked.stdout

    repaired = _cli(platform, "search-index")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert "3 repaired" in repaired.stdout

    status = _status(platform)
    assert status["status"] == "ok" and status["catalog"]["in_sync"] is True, status
    titles = {
        item["title"] for item in api.get("/search", params={"q": "Reconciled"}).json()["items"]
    }
    assert titles == {lost["title"], stale["title"], kept["title"]}


def _rows(platform, service: str, statement: str, **params) -> list:
    with platform.engine(service).connect() as connection:
        return [tuple(row) for row in connection.execute(text(statement), params)]


def _purchases(platform, repair: bool = False) -> dict:
    with platform.rpc(timeout=60) as rpc:
        return rpc.search.reconcile_purchases(repair=repair)


def _interactions(platform, order_id: str) -> list:
    return _rows(
        platform,
        "search",
        "SELECT CAST(product_id AS text), quantity FROM interactions WHERE order_id = :id",
        id=order_id,
    )


def test_recommendation_inputs_drift_is_reported_and_repaired(api):
    platform = api.platform
    (lost_book, _, lost), (altered_book, _, altered), (_, _, refunded), (_, _, kept) = (
        paid_order(api) for _ in range(4)
    )
    assert refund(api, refunded["id"]).json()["status"] == "REFUNDED"

    def recorded() -> dict:
        report = _purchases(platform)
        assert report["in_sync"] is True and report["copy_rows"] == 3, report
        return report

    eventually(recorded)
    assert _interactions(platform, lost["id"]) == [(lost_book["id"], 1)]

    # A purchase's rows lost, one altered, and a refund whose event never arrived.
    _execute(platform, "search", "DELETE FROM interactions WHERE order_id = :id", id=lost["id"])
    _execute(
        platform,
        "search",
        "UPDATE interactions SET quantity = 7 WHERE order_id = :id",
        id=altered["id"],
    )
    _execute(
        platform,
        "search",
        "INSERT INTO interactions (order_id, product_id, user_id, quantity, occurred_at) "
        "VALUES (:id, :product, :user, 1, now())",
        id=refunded["id"],
        product=str(uuid.uuid4()),
        user=refunded["user_id"],
    )

    checked = _cli(platform, "recommendation-inputs", "--check")
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert "1 missing, 1 extra, 1 stale; 0 repaired" in checked.stdout
    assert f"missing: {lost['id']}" in checked.stdout

    repaired = _cli(platform, "recommendation-inputs")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert "3 repaired" in repaired.stdout
    assert _purchases(platform)["in_sync"] is True
    assert _interactions(platform, lost["id"]) == [(lost_book["id"], 1)]
    assert _interactions(platform, altered["id"]) == [(altered_book["id"], 1)]
    assert _interactions(platform, refunded["id"]) == []
    assert len(_interactions(platform, kept["id"])) == 1


def test_a_consumer_that_joins_late_is_backfilled_from_the_owners_data(api):
    """As a new consumer would be: its queues declared (bookstore declare-topology), its
    derived tables empty of everything before, then ``reconcile --all``."""
    platform = api.platform
    orders = [paid_order(api)[2] for _ in range(2)]
    eventually(lambda: _assert_recorded(platform, 2))
    _execute(platform, "search", "DELETE FROM interactions")
    _execute(platform, "search", "DELETE FROM search_documents")

    backfilled = _cli(platform, "--all")
    assert backfilled.returncode == 0, backfilled.stdout + backfilled.stderr
    lines = backfilled.stdout.splitlines()
    assert [line.split(":")[0] for line in lines if not line.startswith(" ")] == [
        "search-index",
        "recommendation-inputs",
        "notify-recipients",
        "analytics-windows",
    ]
    assert "recommendation-inputs: 0 rows, source 2;" in backfilled.stdout
    assert "2 missing, 0 extra, 0 stale; 2 repaired" in backfilled.stdout
    for order in orders:
        assert len(_interactions(platform, order["id"])) == 1
    assert _status(platform)["status"] == "ok"
    assert _cli(platform, "--all", "--check").returncode == 0

    refused = _cli(platform)
    assert refused.returncode == 2 and "name one copy" in refused.stderr


def _assert_recorded(platform, orders: int) -> None:
    assert _purchases(platform)["copy_rows"] == orders


def test_notify_forgets_an_account_whose_deletion_it_never_heard_of(api):
    platform = api.platform
    kept, _ = platform.new_customer()
    deleted, _ = platform.new_customer()
    stranger = str(uuid.uuid4())

    def emailed(user: dict) -> None:
        assert _rows(
            platform,
            "notify",
            "SELECT 1 FROM deliveries WHERE user_id = :id AND recipient = :email",
            id=user["id"],
            email=user["email"],
        )

    for user in (kept, deleted):
        eventually(lambda user=user: emailed(user))
    # Deleted in auth without its event reaching notify, which still waits to write to them;
    # and preferences of someone auth never had.
    _execute(
        platform,
        "auth",
        "UPDATE users SET status = 'deleted', deleted_at = now() WHERE id = :id",
        id=deleted["id"],
    )
    _execute(
        platform,
        "notify",
        "INSERT INTO deliveries (id, channel, event_id, event_type, user_id, recipient, "
        "template, content, status, attempts, next_attempt_at) VALUES (:id, 'email', :event, "
        "'order.shipped', :user, :email, 'order_shipped', CAST('{\"subject\": \"x\"}' AS jsonb), "
        "'pending', 1, now() + interval '1 day')",
        id=str(uuid.uuid4()),
        event=str(uuid.uuid4()),
        user=deleted["id"],
        email=deleted["email"],
    )
    _execute(
        platform,
        "notify",
        "INSERT INTO preferences (user_id, email, sms) VALUES (:id, true, false)",
        id=stranger,
    )

    checked = _cli(platform, "notify-recipients", "--check")
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert "0 missing, 2 extra, 0 stale; 0 repaired" in checked.stdout
    extra_line = next(line for line in checked.stdout.splitlines() if "extra:" in line)
    assert deleted["id"] in extra_line and stranger in extra_line, checked.stdout

    repaired = _cli(platform, "notify-recipients")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert "2 repaired" in repaired.stdout
    left = _rows(
        platform,
        "notify",
        "SELECT status, recipient FROM deliveries WHERE user_id = :id AND channel = 'email'",
        id=deleted["id"],
    )
    assert left and all(recipient is None for _, recipient in left), left
    assert ("skipped", None) in left, "the waiting email is never sent"
    assert (
        _rows(platform, "notify", "SELECT 1 FROM preferences WHERE user_id = :id", id=stranger)
        == []
    )
    emailed(kept)
    assert _cli(platform, "notify-recipients", "--check").returncode == 0


def _analytics(api, report: str, **params: str) -> dict:
    now = datetime.now(UTC)
    response = api.get(
        f"/admin/analytics/{report}",
        params={
            "start": isoformat(now - timedelta(hours=6)),
            "end": isoformat(now + timedelta(hours=1)),
            "currency": "EUR",
            **params,
        },
        token=api.admin,
    )
    assert response.status_code == 200, response.text
    return response.json()


def _sales_totals(api) -> dict:
    return _analytics(api, "sales", granularity="1h")["totals"]


def test_analytics_windows_count_again_what_lost_events_missed(api):
    platform = api.platform
    (lost_book, _, lost), (_, _, unrefunded), (_, _, kept) = (
        paid_order(api, amount=amount) for amount in (1100, 1300, 1700)
    )
    assert refund(api, unrefunded["id"], amount=500).json()["payment"]["refunded_amount"] == 500
    orders = (lost, unrefunded, kept)
    paid = {
        "orders": 3,
        "units": 3,
        "gross": sum(order["total"]["amount"] for order in orders),
        "refunds": 500,
        "checkouts": 3,
    }

    def counted() -> dict:
        totals = _sales_totals(api)
        assert {name: totals[name] for name in paid} == paid, totals
        return totals

    eventually(counted)
    with platform.rpc(timeout=60) as rpc:
        assert rpc.analytics.reconcile_windows(repair=False)["in_sync"] is True
    rankings = {report: _analytics(api, report) for report in ("top-products", "regions")}
    # As if the lost order's order.paid never came (only its checkout counted), and the
    # other order's payment.refunded neither: its record and its window without them.
    window = "start = (SELECT window_start FROM orders WHERE order_id = :id) AND currency = 'EUR'"
    amount = lost["total"]["amount"]
    _execute(
        platform,
        "analytics",
        "UPDATE windows SET orders = orders - 1, units = units - 1, gross = gross - :amount "
        f"WHERE {window}",
        id=lost["id"],
        amount=amount,
    )
    _execute(
        platform,
        "analytics",
        f"DELETE FROM window_products WHERE product_id = :book AND {window}",
        id=lost["id"],
        book=lost_book["id"],
    )
    _execute(
        platform,
        "analytics",
        "UPDATE window_countries SET orders = orders - 1, revenue = revenue - :amount "
        f"WHERE country = upper(:country) AND {window}",
        id=lost["id"],
        amount=amount,
        country=lost["shipping_address"]["country"],
    )
    _execute(
        platform,
        "analytics",
        "UPDATE orders SET counted = NULL, window_start = NULL WHERE order_id = :id",
        id=lost["id"],
    )
    _execute(
        platform,
        "analytics",
        f"UPDATE windows SET refunds = refunds - 500 WHERE {window}",
        id=unrefunded["id"],
    )
    _execute(
        platform,
        "analytics",
        "UPDATE orders SET refunded = 0 WHERE order_id = :id",
        id=unrefunded["id"],
    )
    drifted = _sales_totals(api)
    assert (drifted["orders"], drifted["refunds"]) == (2, 0), drifted

    checked = _cli(platform, "analytics-windows", "--check")
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert "analytics-windows: 2 rows, source 3;" in checked.stdout
    assert "1 missing, 0 extra, 1 stale; 0 repaired" in checked.stdout
    assert f"missing: {lost['id']}" in checked.stdout
    assert f"stale: {unrefunded['id']}" in checked.stdout
    assert _sales_totals(api) == drifted, "a check repairs nothing"

    # Whether the window is still open or closed by now, it is counted as the events
    # would have: a closed one is corrected, and says so.
    with platform.rpc(timeout=30) as rpc:
        rpc.analytics.close_due_windows()
    corrections = len(outbox_events(platform, "analytics", "analytics.window.corrected"))
    repaired = _cli(platform, "analytics-windows")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert "2 repaired" in repaired.stdout
    assert {name: value for name, value in _sales_totals(api).items() if name in paid} == paid
    assert {report: _analytics(api, report) for report in rankings} == rankings
    assert _cli(platform, "analytics-windows", "--check").returncode == 0
    with platform.engine("analytics").connect() as connection:
        closed = connection.scalar(
            text(
                "SELECT closed_at IS NOT NULL FROM windows WHERE start = "
                "(SELECT window_start FROM orders WHERE order_id = :id)"
            ),
            {"id": lost["id"]},
        )
    after = len(outbox_events(platform, "analytics", "analytics.window.corrected"))
    assert after > corrections if closed else after == corrections
