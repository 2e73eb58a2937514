"""The checkout saga as plain Python: svc_order's Checkout against a real PostgreSQL
database (its own, migrated), with the other services replaced by an in-memory fake so
each step can be made to fail, time out or "crash" on purpose. (The real services are
exercised end to end in tests/e2e/test_checkout.py; this is where every branch of the
saga is forced deterministically.)"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import create_engine, text, update
from sqlalchemy.orm import Session

from common.errors import (
    Conflict,
    DependencyUnavailable,
    IdempotencyKeyReused,
    InvalidInput,
    NotFound,
    PaymentDeclined,
)
from ops import databases
from svc_order import carts, orders
from svc_order.checkout import Checkout
from svc_order.models import Order
from tests.harness import NAMESPACE

DECLINING = {"pm_card_chargeDeclined": "card_declined"}


class FakeServices:
    """Catalog stock and reservations, auth addresses, payments: just enough state to
    check the saga's effects, and ``fail`` to break any call once or for good."""

    def __init__(self) -> None:
        self.products: dict[str, dict[str, Any]] = {}
        self.reservations: dict[str, dict[str, Any]] = {}
        self.payments: dict[str, dict[str, Any]] = {}
        self.failures: dict[str, list[Exception]] = {}
        self.calls: list[str] = []

    def add_product(self, price: int = 1000, on_hand: int = 10) -> str:
        product_id = str(uuid.uuid4())
        self.products[product_id] = {"price": price, "on_hand": on_hand, "reserved": 0}
        return product_id

    def fail(self, method: str, *errors: Exception) -> None:
        self.failures[method] = list(errors)

    def _enter(self, method: str) -> None:
        self.calls.append(method)
        if self.failures.get(method):
            raise self.failures[method].pop(0)

    def available(self, product_id: str) -> int:
        product = self.products[product_id]
        return product["on_hand"] - product["reserved"]

    def availability(self, product_ids: list[str]) -> dict[str, Any]:
        self._enter("availability")
        return {
            "products": {
                pid: {
                    "product_id": pid,
                    "title": f"Book {pid[:4]}",
                    "isbn13": "9780000000002",
                    "price": {"amount": self.products[pid]["price"], "currency": "EUR"},
                    "purchasable": True,
                    "available": self.available(pid),
                }
                for pid in product_ids
                if pid in self.products
            }
        }

    def shipping_details(self, user_id: str, address_id: str) -> dict[str, Any]:
        self._enter("shipping_details")
        address = {
            "recipient": "Ada",
            "line1": "1 Road",
            "city": "London",
            "postal_code": "N1",
            "country": "GB",
            "line2": None,
            "region": None,
            "phone": None,
        }
        return {"address": address, "contact": {"email": "ada@example.com", "name": "Ada"}}

    def reserve(self, order_id: str, items: list[dict[str, Any]], ttl_seconds: int) -> dict:
        self._enter("reserve")
        if order_id in self.reservations:
            if self.reservations[order_id]["status"] in ("held", "committed"):
                return self.reservations[order_id]
            raise Conflict("The reservation for this order was released.", {"status": "released"})
        short = [
            {
                "product_id": i["product_id"],
                "requested": i["quantity"],
                "available": self.available(i["product_id"]),
            }
            for i in items
            if self.available(i["product_id"]) < i["quantity"]
        ]
        if short:
            raise Conflict("Not enough stock for some items.", {"short_items": short})
        for item in items:
            self.products[item["product_id"]]["reserved"] += item["quantity"]
        self.reservations[order_id] = {"status": "held", "items": items}
        return self.reservations[order_id]

    def commit_reservation(self, order_id: str) -> dict:
        self._enter("commit_reservation")
        reservation = self.reservations[order_id]
        if reservation["status"] == "held":
            for item in reservation["items"]:
                self.products[item["product_id"]]["reserved"] -= item["quantity"]
                self.products[item["product_id"]]["on_hand"] -= item["quantity"]
            reservation["status"] = "committed"
        elif reservation["status"] != "committed":
            raise Conflict("The reservation was released.")
        return reservation

    def release_reservation(self, order_id: str, reason: str) -> dict:
        self._enter("release_reservation")
        reservation = self.reservations.setdefault(order_id, {"status": "none", "items": []})
        for item in reservation["items"]:
            product = self.products[item["product_id"]]
            if reservation["status"] == "held":
                product["reserved"] -= item["quantity"]
            elif reservation["status"] == "committed":
                product["on_hand"] += item["quantity"]
        reservation["status"] = "released"
        return reservation

    def authorize(self, order_id, amount, currency, payment_method, not_after) -> dict:
        self._enter("authorize")
        if order_id not in self.payments:
            code = DECLINING.get(payment_method)
            self.payments[order_id] = {
                "payment_id": str(uuid.uuid4()),
                "status": "declined" if code else "authorized",
                "decline_code": code,
                "amount": amount,
                "card": {"brand": "visa", "last4": "4242"},
            }
        return self.payments[order_id]

    def get_payment(self, order_id: str) -> dict:
        self._enter("get_payment")
        if order_id not in self.payments:
            raise NotFound("No payment for this order.")
        return self.payments[order_id]

    def refund(self, order_id: str, reason: str) -> dict:
        self._enter("refund")
        self.payments[order_id]["status"] = "refunded"
        return self.payments[order_id]


@pytest.fixture(scope="module")
def saga_engine():
    url = (
        f"postgresql+psycopg2://bookstore:bookstore@127.0.0.1:5432/bookstore_{NAMESPACE}_order_saga"
    )
    databases.prepare("order", url, recreate=True)
    engine = create_engine(url)
    yield engine
    engine.dispose()


@pytest.fixture
def world(saga_engine):
    with saga_engine.begin() as connection:
        connection.execute(
            text("TRUNCATE orders, order_items, order_status_changes, cart_items, outbox CASCADE")
        )

    @contextmanager
    def sessions() -> Iterator[Session]:
        # What nameko-sqlalchemy's get_session() does: commit on success, else roll back.
        session = Session(saga_engine)
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    services = FakeServices()
    return sessions, services, Checkout(sessions, services)


USER = str(uuid.uuid4())
REQUEST = {"shipping_address_id": str(uuid.uuid4()), "payment_method": "pm_card_visa"}


def fill_cart(sessions, services, quantity=2, **product) -> str:
    product_id = services.add_product(**product)
    info = services.availability([product_id])["products"][product_id]
    with sessions() as session:
        carts.set_quantity(session, USER, product_id, quantity, info)
    return product_id


def status_of(sessions, order_id: str) -> str:
    with sessions() as session:
        return orders.find(session, order_id).status


def events(sessions) -> list[str]:
    with sessions() as session:
        return list(session.scalars(text("SELECT event_type FROM outbox ORDER BY id")))


def age(sessions, order_id: str) -> None:
    """Moves the order's placement back past its checkout window."""
    with sessions() as session:
        session.execute(
            update(Order)
            .where(Order.id == order_id)
            .values(created_at=Order.created_at - timedelta(minutes=10))
        )


def test_a_checkout_reserves_authorizes_commits_and_clears_the_cart(world):
    sessions, services, checkout = world
    product_id = fill_cart(sessions, services, quantity=2, price=1500, on_hand=5)
    order = checkout.place_order(USER, REQUEST, "key-1")
    assert order["status"] == "PAID"
    assert order["subtotal"] == {"amount": 3000, "currency": "EUR"}
    assert services.products[product_id] == {"price": 1500, "on_hand": 3, "reserved": 0}
    assert services.payments[order["id"]]["status"] == "authorized"
    with sessions() as session:
        assert carts.lines(session, USER) == []
    assert events(sessions) == ["order.created", "order.paid"]
    assert [step["status"] for step in order["history"]] == ["PENDING_PAYMENT", "PAID"]


def test_shipping_is_charged_below_the_free_shipping_threshold(world):
    sessions, services, checkout = world
    fill_cart(sessions, services, quantity=1, price=1000)
    order = checkout.place_order(USER, REQUEST, "key-ship")
    assert order["shipping"]["amount"] == 399
    assert order["total"]["amount"] == 1399


def test_a_replay_returns_the_same_order_and_a_changed_body_is_refused(world):
    sessions, services, checkout = world
    fill_cart(sessions, services)
    first = checkout.place_order(USER, REQUEST, "key-2")
    again = checkout.place_order(USER, REQUEST, "key-2")
    assert again == first
    assert services.calls.count("authorize") == 1
    with pytest.raises(IdempotencyKeyReused):
        checkout.place_order(USER, {**REQUEST, "payment_method": "pm_card_mastercard"}, "key-2")


def test_out_of_stock_cancels_and_a_replay_gets_the_same_answer(world):
    sessions, services, checkout = world
    product_id = fill_cart(sessions, services, quantity=3, on_hand=3)
    services.products[product_id]["on_hand"] = 1  # sold elsewhere meanwhile
    with pytest.raises(Conflict) as raised:
        checkout.place_order(USER, REQUEST, "key-3")
    assert raised.value.extensions["short_items"][0]["available"] == 1
    order_id = raised.value.extensions["order_id"]
    assert status_of(sessions, order_id) == "CANCELLED"
    with pytest.raises(Conflict) as replayed:
        checkout.place_order(USER, REQUEST, "key-3")
    assert replayed.value.extensions == raised.value.extensions
    assert "authorize" not in services.calls


def test_a_declined_card_releases_the_stock(world):
    sessions, services, checkout = world
    product_id = fill_cart(sessions, services, quantity=2, on_hand=2)
    request = {**REQUEST, "payment_method": "pm_card_chargeDeclined"}
    with pytest.raises(PaymentDeclined) as raised:
        checkout.place_order(USER, request, "key-4")
    assert raised.value.extensions["decline_code"] == "card_declined"
    assert services.available(product_id) == 2
    assert status_of(sessions, raised.value.extensions["order_id"]) == "CANCELLED"
    with sessions() as session:
        assert len(carts.lines(session, USER)) == 1, "the cart stays for another try"
    with pytest.raises(PaymentDeclined):
        checkout.place_order(USER, request, "key-4")


def test_an_empty_cart_cannot_be_checked_out(world):
    _, _, checkout = world
    with pytest.raises(InvalidInput):
        checkout.place_order(USER, REQUEST, "key-5")


def test_a_crash_before_payment_is_settled_by_the_timer(world):
    sessions, services, checkout = world
    product_id = fill_cart(sessions, services, quantity=1, on_hand=1)
    services.fail("authorize", DependencyUnavailable("payment did not answer"))
    with pytest.raises(DependencyUnavailable):
        checkout.place_order(USER, REQUEST, "key-6")
    order_id = str(orders.order_id_for(USER, "key-6"))
    assert status_of(sessions, order_id) == "PENDING_PAYMENT"
    assert services.available(product_id) == 0
    checkout.converge()
    assert status_of(sessions, order_id) == "PENDING_PAYMENT", "still inside its window"
    age(sessions, order_id)
    checkout.converge()
    assert status_of(sessions, order_id) == "CANCELLED"
    assert services.available(product_id) == 1
    assert order_id not in services.payments


def test_a_crash_after_payment_is_settled_as_paid(world):
    sessions, services, checkout = world
    product_id = fill_cart(sessions, services, quantity=1, on_hand=1)
    services.fail("commit_reservation", DependencyUnavailable("catalog went away"))
    with pytest.raises(DependencyUnavailable):
        checkout.place_order(USER, REQUEST, "key-7")
    order_id = str(orders.order_id_for(USER, "key-7"))
    age(sessions, order_id)
    checkout.converge()
    assert status_of(sessions, order_id) == "PAID"
    assert services.products[product_id]["on_hand"] == 0
    # The client's retry now gets the paid order.
    assert checkout.place_order(USER, REQUEST, "key-7")["status"] == "PAID"


def test_a_retry_resumes_an_unfinished_checkout(world):
    sessions, services, checkout = world
    fill_cart(sessions, services)
    services.fail("reserve", DependencyUnavailable("catalog timed out"))
    with pytest.raises(DependencyUnavailable):
        checkout.place_order(USER, REQUEST, "key-8")
    assert checkout.place_order(USER, REQUEST, "key-8")["status"] == "PAID"
    assert services.calls.count("authorize") == 1


def test_payment_after_the_stock_was_lost_is_refunded(world):
    sessions, services, checkout = world
    fill_cart(sessions, services)
    services.fail("commit_reservation", Conflict("The reservation was expired."))
    with pytest.raises(Conflict):
        checkout.place_order(USER, REQUEST, "key-9")
    order_id = str(orders.order_id_for(USER, "key-9"))
    assert services.payments[order_id]["status"] == "refunded"
    with sessions() as session:
        order = orders.find(session, order_id)
        assert (order.status, order.cancel_reason) == ("CANCELLED", "reservation_lost")


def test_cancelling_a_paid_order_restocks_and_refunds_even_after_a_failure(world):
    sessions, services, checkout = world
    product_id = fill_cart(sessions, services, quantity=2, on_hand=2)
    order = checkout.place_order(USER, REQUEST, "key-10")
    services.fail("refund", DependencyUnavailable("payment is down"))
    cancelled = checkout.cancel(order["id"], USER, owner_id=USER)
    assert cancelled["status"] == "CANCELLED"
    assert services.products[product_id]["on_hand"] == 2
    checkout.converge()  # the timer retries the refund
    assert status_of(sessions, order["id"]) == "REFUNDED"
    assert services.payments[order["id"]]["status"] == "refunded"
    assert events(sessions)[-2:] == ["order.cancelled", "order.refunded"]


def test_illegal_moves_are_conflicts(world):
    sessions, services, checkout = world
    fill_cart(sessions, services)
    order = checkout.place_order(USER, REQUEST, "key-11")
    with pytest.raises(NotFound):
        checkout.cancel(order["id"], "someone", owner_id=str(uuid.uuid4()))
    with sessions() as session:
        paid = orders.find(session, order["id"], for_update=True)
        with pytest.raises(Conflict):
            orders.transition(session, paid, orders.DELIVERED)
        orders.transition(session, paid, orders.SHIPPED)
    with pytest.raises(Conflict):
        checkout.cancel(order["id"], USER, owner_id=USER)


@pytest.mark.parametrize(
    ("current", "target", "allowed"),
    [
        ("PENDING_PAYMENT", "PAID", True),
        ("PENDING_PAYMENT", "SHIPPED", False),
        ("PAID", "CANCELLED", True),
        ("SHIPPED", "CANCELLED", False),
        ("DELIVERED", "REFUNDED", True),
        ("REFUNDED", "PAID", False),
        ("CANCELLED", "PAID", False),
    ],
)
def test_the_state_machine(current, target, allowed):
    assert orders.can_move(current, target) is allowed
