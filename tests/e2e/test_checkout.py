"""Checking out through the gateway with the real services: catalog (stock), auth
(addresses), order (cart, saga) and payment (the mock provider and its test cards)."""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from urllib.parse import unquote

import pytest
import requests
from nameko.exceptions import RpcTimeout

from tests.support import (
    VISA,
    assert_problem,
    checkout,
    eventually,
    fill,
    frozen,
    shopper,
    stock,
    stocked_book,
)

DECLINED_CARD = "4000000000000002"
#: What a replay of a checkout cancelled by the order service's own recovery answers,
#: by cancel reason (svc_order/checkout.py): the first answer, stored on the order.
STORED_FAILURES = {
    "checkout_abandoned": "The checkout did not finish in time; nothing was charged.",
    "reservation_lost": (
        "The checkout took too long and the books were released; nothing was charged."
    ),
}


def test_browse_fill_check_out_ship_and_deliver(api):
    book = stocked_book(api, on_hand=5, amount=2000)
    token, address_id = shopper(api)
    fill(api, token, book, 2)
    placed = checkout(api, token, address_id)
    assert placed.status_code == 201, placed.text
    order = placed.json()
    assert placed.headers["Location"].endswith(order["id"])
    assert order["status"] == "PAID"
    assert order["total"] == {"amount": 4000, "currency": "EUR"}
    assert order["payment"]["card"]["last4"] == "4242"
    assert order["shipping_address"]["city"] == "London"
    assert api.get("/cart", token=token).json()["items"] == []
    assert stock(api, book) | {"product_id": None} == {
        "product_id": None,
        "on_hand": 3,
        "reserved": 0,
        "available": 3,
        "low_stock_threshold": 5,
    }
    history = api.get("/orders", token=token).json()
    assert [item["id"] for item in history["items"]] == [order["id"]]
    assert api.get(f"/orders/{order['id']}", token=token).json() == order

    shipped = api.post(f"/admin/orders/{order['id']}/ship", token=api.admin).json()
    assert shipped["status"] == "SHIPPED"
    assert_problem(api.post(f"/orders/{order['id']}/cancel", token=token), 409)
    delivered = api.post(f"/admin/orders/{order['id']}/deliver", token=api.admin).json()
    assert [step["status"] for step in delivered["history"]] == [
        "PENDING_PAYMENT",
        "PAID",
        "SHIPPED",
        "DELIVERED",
    ]
    assert_problem(api.post(f"/admin/orders/{order['id']}/ship", token=api.admin), 409)


def test_a_declined_card_is_402_and_gives_the_stock_back(api):
    book = stocked_book(api, on_hand=1)
    token, address_id = shopper(api)
    fill(api, token, book)
    body = assert_problem(checkout(api, token, address_id, DECLINED_CARD), 402)
    assert body["decline_code"] == "card_declined"
    assert stock(api, book)["available"] == 1
    order = api.get(f"/orders/{body['order_id']}", token=token).json()
    assert order["status"] == "CANCELLED"
    assert order["cancel_reason"] == "payment_declined"
    # The cart is still there: try again with another card.
    assert checkout(api, token, address_id).json()["status"] == "PAID"


def test_cancelling_a_paid_order_refunds_and_restocks(api):
    book = stocked_book(api, on_hand=2)
    token, address_id = shopper(api)
    fill(api, token, book, 2)
    order = checkout(api, token, address_id).json()
    assert stock(api, book)["on_hand"] == 0
    cancelled = api.post(f"/orders/{order['id']}/cancel", token=token)
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] in {"CANCELLED", "REFUNDED"}
    final = eventually(lambda: _status(api, token, order["id"], "REFUNDED"))
    assert final["payment"]["status"] == "refunded"
    assert stock(api, book) | {"product_id": None} == {
        "product_id": None,
        "on_hand": 2,
        "reserved": 0,
        "available": 2,
        "low_stock_threshold": 5,
    }


def _status(api, token, order_id, expected):
    order = api.get(f"/orders/{order_id}", token=token).json()
    assert order["status"] == expected, order["status"]
    return order


def test_a_replayed_checkout_creates_one_order_and_one_payment(api):
    book = stocked_book(api, on_hand=10)
    token, address_id = shopper(api)
    fill(api, token, book, 1)
    key = str(uuid.uuid4())
    with ThreadPoolExecutor(4) as pool:
        responses = list(pool.map(lambda _: checkout(api, token, address_id, key=key), range(4)))
    orders = {response.json()["id"] for response in responses if response.status_code == 201}
    assert len(orders) == 1, [response.text for response in responses]
    order_id = orders.pop()
    assert all(response.status_code == 201 for response in responses)
    assert checkout(api, token, address_id, key=key).json()["id"] == order_id
    assert stock(api, book)["on_hand"] == 9
    with api.platform.rpc() as rpc:
        attempts = rpc.payment.list_attempts(order_id)
    assert len([attempt for attempt in attempts if attempt["outcome"] == "authorized"]) == 1
    changed = checkout(api, token, address_id, payment_method="pm_card_mastercard", key=key)
    assert_problem(changed, 422)


def test_concurrent_buyers_of_the_last_copies(api):
    book = stocked_book(api, on_hand=3)
    buyers = [shopper(api) for _ in range(8)]
    for token, _ in buyers:
        fill(api, token, book, 1)
    start = threading.Barrier(len(buyers))

    def buy(buyer):
        start.wait()
        return checkout(api, *buyer)

    with ThreadPoolExecutor(len(buyers)) as pool:
        responses = list(pool.map(buy, buyers))
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [201] * 3 + [409] * 5, [response.text for response in responses]
    for response in responses:
        if response.status_code == 409:
            short = response.json()["short_items"]
            assert short[0]["product_id"] == book["id"] and short[0]["requested"] == 1
    assert stock(api, book)["on_hand"] == 0 and stock(api, book)["reserved"] == 0


def test_bad_checkouts(api):
    book = stocked_book(api)
    token, address_id = shopper(api)
    assert_problem(checkout(api, token, address_id), 422)  # empty cart
    fill(api, token, book)
    no_key = api.post(
        "/orders", json={"shipping_address_id": address_id, "payment_method": VISA}, token=token
    )
    assert_problem(no_key, 400)
    assert_problem(checkout(api, token, str(uuid.uuid4())), 422)  # not an address of mine
    assert_problem(checkout(api, token, address_id, payment_method="cash please"), 400)
    assert_problem(checkout(api, token, address_id, payment_method="4242424242424241"), 422)
    _, other_address = shopper(api)
    assert_problem(checkout(api, token, other_address), 422)  # someone else's address


def test_orders_are_private_and_admin_moves_need_the_scope(api):
    book = stocked_book(api)
    alice, alice_address = shopper(api)
    mallory, _ = shopper(api)
    fill(api, alice, book)
    order = checkout(api, alice, alice_address).json()
    assert_problem(api.get(f"/orders/{order['id']}", token=mallory), 404)
    assert_problem(api.post(f"/orders/{order['id']}/cancel", token=mallory), 404)
    assert api.get("/orders", token=mallory).json()["items"] == []
    assert_problem(api.post(f"/admin/orders/{order['id']}/ship", token=alice), 403)
    assert_problem(api.get("/admin/orders", token=alice), 403)
    listed = api.get("/admin/orders", params={"status": "PAID"}, token=api.admin).json()
    assert [item["id"] for item in listed["items"]] == [order["id"]]


def test_order_history_is_paged(api):
    book = stocked_book(api, on_hand=10)
    token, address_id = shopper(api)
    placed = []
    for _ in range(3):
        fill(api, token, book)
        placed.append(checkout(api, token, address_id).json()["id"])
    first = api.get("/orders", params={"limit": 2}, token=token).json()
    rest = api.get(
        "/orders", params={"limit": 2, "cursor": first["next_cursor"]}, token=token
    ).json()
    assert [o["id"] for o in first["items"] + rest["items"]] == placed[::-1]
    assert rest["next_cursor"] is None


@pytest.mark.timeout(180)
def test_the_order_service_killed_mid_checkout_converges(api):
    """The payment service is frozen so the checkout stops after reserving; the order
    service is killed while it waits, then restarted. The order must end PAID or
    CANCELLED, with stock that matches, and one payment at most."""
    book = stocked_book(api, on_hand=1)
    token, address_id = shopper(api)
    fill(api, token, book)
    payment = api.platform.processes["payment"]
    order_service = api.platform.processes["order"]
    key = str(uuid.uuid4())
    with frozen(payment):
        response = checkout(api, token, address_id, key=key)
        assert response.status_code in (503, 504), response.text
        assert stock(api, book)["reserved"] == 1, "stopped between reservation and payment"
        order_service.process.kill()
        order_service.process.wait()
    order_service.start()
    eventually(lambda: _ping(api), timeout=60)

    def settled():
        order = api.get("/orders", token=token).json()["items"][0]
        assert order["status"] in ("PAID", "CANCELLED"), order["status"]
        return order

    order = eventually(settled, timeout=90)
    level = stock(api, book)
    assert level["reserved"] == 0
    assert level["on_hand"] == (0 if order["status"] == "PAID" else 1)
    with api.platform.rpc() as rpc:
        attempts = rpc.payment.list_attempts(order["id"])
    authorized = [attempt for attempt in attempts if attempt["outcome"] == "authorized"]
    assert len(authorized) == (1 if order["status"] == "PAID" else 0)
    # The customer's retry gets the settled outcome, not a second order.
    retry = checkout(api, token, address_id, key=key)
    if order["status"] == "PAID":
        assert retry.status_code == 201, retry.text
        assert retry.json()["id"] == order["id"]
    else:
        # The stored failure, naming the same order (svc_order/domain.py, Order.fail).
        problem = assert_problem(retry, 409)
        assert problem["order_id"] == order["id"]
        assert problem["detail"] == STORED_FAILURES[order["cancel_reason"]]
    assert [placed["id"] for placed in api.get("/orders", token=token).json()["items"]] == [
        order["id"]
    ]


def _ping(api):
    # Until the restarted service consumes its queue a call times out: not ready yet.
    try:
        with api.platform.rpc(timeout=5) as rpc:
            assert rpc.order.ping()["status"] == "ok"
    except RpcTimeout as error:
        raise AssertionError("the order service does not answer yet") from error


def _connections(vhost: str) -> set[str]:
    listed = subprocess.run(
        ["rabbitmqctl", "-q", "list_connections", "name", "vhost"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return {
        name
        for name, _, host in (line.rpartition("\t") for line in listed.splitlines())
        if host == vhost
    }


def _restart_broker_for(vhost: str) -> None:
    """Closes every client connection to ``vhost`` (this test platform's only): what each
    service sees when the broker restarts, without restarting the machine's RabbitMQ."""
    before = _connections(vhost)
    assert before, f"nothing connected to {vhost}"
    subprocess.run(
        [
            "rabbitmqctl",
            "-q",
            "close_all_connections",
            "--vhost",
            vhost,
            "--limit",
            "1000",
            "broker restart (test)",
        ],
        check=True,
        capture_output=True,
    )

    def closed():
        # The broker closes them in the background, after answering the command.
        assert not before & _connections(vhost), "some connections survived"

    eventually(closed, timeout=30)


def _insist(attempt, deadline):
    """What a client does with a 5xx: the same request again (same Idempotency-Key)
    until a final answer or the deadline."""
    while True:
        try:
            response = attempt()
        except requests.RequestException:
            response = None
        if response is not None and response.status_code < 500:
            return response
        assert time.monotonic() < deadline, "no final answer before the deadline"
        time.sleep(0.3)


@pytest.mark.timeout(300)
def test_a_broker_restart_mid_stream_loses_no_order_and_charges_nothing_twice(api):
    """Three customers check out one after another while every connection of the
    platform's vhost is closed, twice. Each client retries a 5xx with the same key, as
    clients do. Every checkout ends in one order (PAID, or CANCELLED if it outlasted its
    window: then nothing charged), stock matches what was paid, one authorization and
    one confirmation email per paid order; and the platform still sells afterwards."""
    on_hand = 40
    book = stocked_book(api, on_hand=on_hand)
    buyers = [shopper(api) for _ in range(3)]
    emails = {token: api.get("/me", token=token).json()["email"] for token, _ in buyers}
    per_buyer = 6
    deadline = time.monotonic() + 150
    done = threading.Semaphore(0)
    answers: dict[str, list] = {token: [] for token, _ in buyers}

    def buy(buyer):
        token, address_id = buyer
        for _ in range(per_buyer):
            key = str(uuid.uuid4())
            filled = _insist(
                lambda: api.request(
                    "PUT", f"/cart/items/{book['id']}", json={"quantity": 1}, token=token
                ),
                deadline,
            )
            assert filled.status_code == 200, filled.text
            answer = _insist(partial(checkout, api, token, address_id, key=key), deadline)
            assert answer.status_code in (201, 409), answer.text
            answers[token].append((key, answer))
            done.release()

    vhost = unquote(api.platform.amqp_uri.rsplit("/", 1)[1])
    with ThreadPoolExecutor(len(buyers)) as pool:
        streams = [pool.submit(buy, buyer) for buyer in buyers]
        for _ in range(3):
            done.acquire(timeout=120)
        _restart_broker_for(vhost)
        time.sleep(3)
        _restart_broker_for(vhost)
        for stream in streams:
            stream.result()

    def settled():
        final = {}
        for token, _ in buyers:
            listed = api.get("/orders", params={"limit": 50}, token=token).json()["items"]
            # One order per checkout: none lost, none doubled by a retry.
            assert len(listed) == per_buyer, [order["status"] for order in listed]
            for order in listed:
                assert order["status"] in ("PAID", "CANCELLED"), order["status"]
                final[order["id"]] = (token, order)
        return final

    final = eventually(settled, timeout=90)
    for replies in answers.values():
        for _, answer in replies:
            if answer.status_code == 201:
                assert answer.json()["id"] in final
    paid = [order for _, order in final.values() if order["status"] == "PAID"]
    assert paid, "no checkout went through"

    def stock_settled():
        level = stock(api, book)
        assert level["reserved"] == 0 and level["on_hand"] == on_hand - len(paid), level

    eventually(stock_settled, timeout=60)
    with api.platform.rpc() as rpc:
        for order_id, (_, order) in final.items():
            attempts = rpc.payment.list_attempts(order_id)
            authorized = [attempt for attempt in attempts if attempt["outcome"] == "authorized"]
            assert len(authorized) <= 1, attempts
            if order["status"] == "PAID":
                assert len(authorized) == 1, attempts
            elif authorized:
                # Authorized, then cancelled (the window passed): given back in full.
                payment = rpc.payment.get_payment(order_id)
                assert payment["refunded_amount"] == payment["amount"], payment

    def one_email_each():
        for token, order in final.values():
            if order["status"] == "PAID":
                subject = f"Your order {order['id'][:8]} is confirmed"
                sent = [
                    message
                    for message in api.platform.smtp.messages_to(emails[token])
                    if message["Subject"] == subject
                ]
                assert len(sent) == 1, (order["id"], len(sent))

    eventually(one_email_each, timeout=60)
    token, address_id = buyers[0]
    fill(api, token, book)
    after = checkout(api, token, address_id)
    assert after.status_code == 201 and after.json()["status"] == "PAID", after.text
