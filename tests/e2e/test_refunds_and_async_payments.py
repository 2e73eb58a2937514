"""Refunds and payments that finish later (3-D Secure), with the built-in mock provider:
the same flows as with Stripe, and no configuration at all."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

from tests.support import (
    Api,
    assert_problem,
    checkout,
    eventually,
    fill,
    paid_order,
    refund,
    shopper,
    stock,
    stocked_book,
)


def test_partial_then_full_refund_of_a_delivered_order(api):
    _, token, order = paid_order(api, amount=4000)  # free shipping: total 4000
    api.post(f"/admin/orders/{order['id']}/ship", token=api.admin)
    api.post(f"/admin/orders/{order['id']}/deliver", token=api.admin)

    partial = refund(api, order["id"], amount=1500)
    assert partial.status_code == 200, partial.text
    assert partial.json()["status"] == "DELIVERED"
    assert partial.json()["payment"]["refunded_amount"] == 1500
    too_much = assert_problem(refund(api, order["id"], amount=2501), 422)
    assert too_much["refundable"] == 2500
    rest = refund(api, order["id"]).json()
    assert rest["status"] == "REFUNDED"
    assert rest["payment"]["status"] == "refunded"
    record = api.get(f"/orders/{order['id']}/payments", token=token).json()
    assert [item["amount"] for item in record["refunds"]] == [1500, 2500]
    assert record["payment"]["refunded_amount"] == 4000
    assert_problem(refund(api, order["id"], amount=1), 409)  # nothing left: REFUNDED


def test_concurrent_partial_refunds_never_refund_more_than_was_paid(api):
    """Six administrators refund 1,500 of a 4,000 payment at the same moment: two fit,
    the others are refused precisely, and payment's and order's records agree."""
    _, token, order = paid_order(api, amount=4000)  # free shipping: total 4000
    api.post(f"/admin/orders/{order['id']}/ship", token=api.admin)
    api.post(f"/admin/orders/{order['id']}/deliver", token=api.admin)
    attempts, share = 6, 1500
    start = threading.Barrier(attempts)

    def one_refund(_):
        client = Api(api.platform)  # a connection of its own: really concurrent
        start.wait(timeout=30)
        return refund(client, order["id"], amount=share)

    with ThreadPoolExecutor(attempts) as pool:
        responses = list(pool.map(one_refund, range(attempts)))

    accepted = [response for response in responses if response.status_code == 200]
    refused = [response for response in responses if response.status_code != 200]
    assert len(accepted) == 4000 // share, [response.text for response in responses]
    for response in refused:
        # Refunds of one payment are taken one at a time (svc_payment/payments.py), so a
        # loser sees what the winners left: 4000 - 2 * 1500.
        problem = assert_problem(response, 422)
        assert problem["refundable"] == 4000 - len(accepted) * share
    refunded = len(accepted) * share
    assert refunded <= 4000

    record = api.get(f"/orders/{order['id']}/payments", token=token).json()
    assert sorted(item["amount"] for item in record["refunds"]) == [share] * len(accepted)
    assert record["payment"]["refunded_amount"] == refunded
    # The order's copy of the payment agrees, once every refund's answer has landed.
    final = api.get(f"/admin/orders/{order['id']}", token=api.admin).json()
    assert final["status"] == "DELIVERED"
    assert final["payment"]["refunded_amount"] == refunded
    assert final["payment"]["status"] == record["payment"]["status"]


def test_a_full_refund_before_shipping_gives_the_stock_back(api):
    book, _, order = paid_order(api, quantity=2, on_hand=2)
    assert stock(api, book)["on_hand"] == 0
    refunded = refund(api, order["id"]).json()
    assert refunded["status"] in ("CANCELLED", "REFUNDED")
    eventually(lambda: _assert(stock(api, book)["on_hand"] == 2))
    eventually(
        lambda: _assert(
            api.get(f"/admin/orders/{order['id']}", token=api.admin).json()["status"] == "REFUNDED"
        )
    )


def _assert(condition):
    assert condition


def test_refunds_need_a_paid_order_and_an_admin(api):
    _, token, order = paid_order(api)
    assert_problem(
        api.post(f"/admin/orders/{order['id']}/refunds", json={"reason": "mine"}, token=token), 403
    )
    assert_problem(refund(api, str(uuid.uuid4())), 404)
    assert_problem(refund(api, order["id"], amount=0), 400)
    assert_problem(refund(api, order["id"], amount=-5), 400)
    assert_problem(api.post(f"/admin/orders/{order['id']}/refunds", json={}, token=api.admin), 400)
    declined_book = stocked_book(api)
    other, address = shopper(api)
    fill(api, other, declined_book)
    declined = checkout(api, other, address, payment_method="pm_card_chargeDeclined").json()
    assert_problem(refund(api, declined["order_id"]), 409)


def test_three_d_secure_leaves_the_order_pending_until_the_outcome_arrives(api):
    book = stocked_book(api, on_hand=1)
    token, address_id = shopper(api)
    fill(api, token, book)
    placed = checkout(api, token, address_id, payment_method="pm_card_authenticationRequired")
    assert placed.status_code == 201, placed.text
    order = placed.json()
    assert order["status"] == "PENDING_PAYMENT"
    assert order["payment"]["status"] == "requires_action"
    assert order["payment"]["next_action"]["type"] == "redirect_to_url"
    assert order["payment"]["client_secret"]
    assert stock(api, book)["reserved"] == 1, "held while the customer authenticates"

    with api.platform.rpc() as rpc:  # what a provider webhook does, for the mock
        rpc.payment.simulate_action(order["id"], True)
    paid = eventually(lambda: _order_status(api, token, order["id"], "PAID"))
    assert paid["payment"]["client_secret"] is None
    assert stock(api, book)["on_hand"] == 0 and stock(api, book)["reserved"] == 0


def test_a_failed_authentication_cancels_and_releases(api):
    book = stocked_book(api, on_hand=1)
    token, address_id = shopper(api)
    fill(api, token, book)
    order = checkout(api, token, address_id, payment_method="pm_card_authenticationRequired").json()
    with api.platform.rpc() as rpc:
        rpc.payment.simulate_action(order["id"], False)
    cancelled = eventually(lambda: _order_status(api, token, order["id"], "CANCELLED"))
    assert cancelled["cancel_reason"] == "payment_declined"
    assert stock(api, book)["reserved"] == 0


def test_an_abandoned_authentication_is_given_up_after_its_window(api):
    """ORDER_ACTION_WINDOW_SECONDS is 20 in the test platform."""
    book = stocked_book(api, on_hand=1)
    token, address_id = shopper(api)
    fill(api, token, book)
    order = checkout(api, token, address_id, payment_method="pm_card_authenticationRequired").json()
    cancelled = eventually(lambda: _order_status(api, token, order["id"], "CANCELLED"), timeout=90)
    assert cancelled["payment"]["status"] == "canceled"
    assert stock(api, book)["reserved"] == 0


def _order_status(api, token, order_id, expected):
    order = api.get(f"/orders/{order_id}", token=token).json()
    assert order["status"] == expected, order["status"]
    return order


def test_payments_view_is_private(api):
    _, token, order = paid_order(api)
    _, stranger = api.platform.new_customer()
    assert_problem(api.get(f"/orders/{order['id']}/payments", token=stranger), 404)
    record = api.get(f"/orders/{order['id']}/payments", token=token).json()
    assert record["payment"]["status"] == "authorized"
    assert [attempt["outcome"] for attempt in record["attempts"]] == ["authorized"]
    assert "client_secret" not in record["payment"]
