"""Payments through Stripe's API: a platform of its own whose payment service uses the
official SDK against localstripe on loopback (tests/stripe_support.py says what the
small proxy in front of it adds: Stripe's idempotency keys, and a slow network).
localstripe delivers its webhooks, signed, to this platform's gateway."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
import requests

from ops import cli
from tests import harness
from tests import stripe_support as stripe
from tests.support import (
    Api,
    assert_problem,
    checkout,
    eventually,
    fill,
    shopper,
    stock,
    stocked_book,
)

pytestmark = pytest.mark.timeout(240)


@dataclass
class StripeWorld:
    platform: harness.Platform
    localstripe: str
    proxy: stripe.StripeProxy


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    with stripe.localstripe(tmp_path_factory.mktemp("localstripe") / "log") as localstripe:
        proxy = stripe.StripeProxy(localstripe)
        platform = harness.start_platform(
            f"{harness.NAMESPACE}_stripe",
            {
                "PAYMENT_PROVIDER": "stripe",
                "STRIPE_API_KEY": stripe.API_KEY,
                "STRIPE_WEBHOOK_SECRET": stripe.WEBHOOK_SECRET,
                "STRIPE_API_BASE": proxy.url,
                "STRIPE_TIMEOUT_SECONDS": "2",
                "PAYMENT_BREAKER_FAILURES": "3",
                "PAYMENT_BREAKER_RESET_SECONDS": "4",
            },
        )
        try:
            stripe.register_webhook(localstripe, f"{platform.api}/webhooks/stripe")
            yield StripeWorld(platform, localstripe, proxy)
        finally:
            harness.stop_platform(platform)
            proxy.close()


@pytest.fixture
def api(world):
    world.platform.reset_data()
    return Api(world.platform)


def intents_for(world, order_id):
    return [
        intent
        for intent in stripe.payment_intents(world.localstripe)
        if (intent.get("metadata") or {}).get("order_id") == order_id
    ]


def post_webhook(api, event, signature=None):
    payload = json.dumps(event)
    return requests.post(
        f"{api.platform.api}/webhooks/stripe",
        data=payload,
        headers={
            "Content-Type": "application/json",
            "Stripe-Signature": signature or stripe.sign(payload),
        },
        timeout=10,
    )


def test_an_approving_card(api, world):
    book = stocked_book(api, on_hand=2)
    token, address = shopper(api)
    fill(api, token, book)
    order = checkout(api, token, address, payment_method="pm_card_visa").json()
    assert order["status"] == "PAID"
    (intent,) = intents_for(world, order["id"])
    assert intent["status"] == "succeeded"
    assert intent["amount"] == order["total"]["amount"]


def test_a_declining_card(api, world):
    book = stocked_book(api, on_hand=1)
    token, address = shopper(api)
    fill(api, token, book)
    body = assert_problem(
        checkout(api, token, address, payment_method="pm_card_chargeCustomerFail"), 402
    )
    assert body["decline_code"] == "card_declined"
    assert stock(api, book)["available"] == 1
    assert_problem(checkout(api, token, address, payment_method="4242424242424242"), 422)


def test_three_d_secure_completed_by_webhook(api, world):
    book = stocked_book(api, on_hand=1)
    token, address = shopper(api)
    fill(api, token, book)
    method = stripe.payment_method(world.localstripe, "4000002760003184")
    order = checkout(api, token, address, payment_method=method).json()
    assert order["status"] == "PENDING_PAYMENT"
    secret = order["payment"]["client_secret"]
    assert order["payment"]["next_action"]["type"] == "use_stripe_sdk"
    # The customer authenticates in their browser; Stripe then calls our webhook.
    stripe.authenticate(world.localstripe, secret.split("_secret_")[0], secret, success=True)

    def paid():
        current = api.get(f"/orders/{order['id']}", token=token).json()
        assert current["status"] == "PAID", current["status"]

    eventually(paid, timeout=30)
    assert stock(api, book)["on_hand"] == 0


def test_webhooks_are_verified_applied_once_and_never_undo_a_success(api, world):
    book = stocked_book(api)
    token, address = shopper(api)
    fill(api, token, book)
    order = checkout(api, token, address, payment_method="pm_card_visa").json()
    (intent,) = intents_for(world, order["id"])
    succeeded = {
        "id": f"evt_{uuid.uuid4().hex}",
        "type": "payment_intent.succeeded",
        "data": {"object": {"id": intent["id"], "object": "payment_intent"}},
    }
    first = post_webhook(api, succeeded)
    assert first.status_code == 200, first.text
    assert post_webhook(api, succeeded).json()["outcome"] == "duplicate"

    late_failure = {
        "id": f"evt_{uuid.uuid4().hex}",
        "type": "payment_intent.payment_failed",
        "data": {"object": {"id": intent["id"], "last_payment_error": {"code": "card_declined"}}},
    }
    assert post_webhook(api, late_failure).json()["outcome"] == "ignored"
    assert api.get(f"/orders/{order['id']}", token=token).json()["status"] == "PAID"

    unknown = {
        "id": f"evt_{uuid.uuid4().hex}",
        "type": "payment_intent.succeeded",
        "data": {"object": {"id": "pi_not_ours"}},
    }
    assert post_webhook(api, unknown).json()["outcome"] == "unmatched"

    forged = assert_problem(post_webhook(api, late_failure, signature=stripe.sign("{}")), 400)
    assert "Stripe-Signature" in forged["detail"]
    stale = stripe.sign(json.dumps(late_failure), timestamp=int(time.time()) - 3600)
    assert_problem(post_webhook(api, late_failure, signature=stale), 400)
    no_signature = requests.post(
        f"{api.platform.api}/webhooks/stripe", json=late_failure, timeout=10
    )
    assert_problem(no_signature, 400)
    malformed = requests.post(
        f"{api.platform.api}/webhooks/stripe",
        data="{not json",
        headers={"Content-Type": "application/json", "Stripe-Signature": stripe.sign("{not json")},
        timeout=10,
    )
    assert_problem(malformed, 400)


def test_partial_then_full_refund_and_reconciliation(api, world):
    # localstripe keeps the earlier tests' payments, which reset_data removed on our
    # side: start the window after them. Stripe's times are whole seconds, so the window
    # starts at the next whole second, once the clock has passed it.
    since = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    time.sleep(max(0.0, (since - datetime.now(UTC)).total_seconds()))
    book = stocked_book(api, amount=4000)
    token, address = shopper(api)
    fill(api, token, book)
    order = checkout(api, token, address, payment_method="pm_card_visa").json()
    api.post(f"/admin/orders/{order['id']}/ship", token=api.admin)
    refund = api.post(
        f"/admin/orders/{order['id']}/refunds",
        json={"amount": 1000, "reason": "dent"},
        token=api.admin,
    )
    assert refund.json()["payment"]["refunded_amount"] == 1000
    assert_problem(
        api.post(
            f"/admin/orders/{order['id']}/refunds",
            json={"amount": 3001, "reason": "x"},
            token=api.admin,
        ),
        422,
    )
    (intent,) = intents_for(world, order["id"])
    report = _reconcile(world, since)
    assert report["comparable"] and report["mismatches"] == [], report

    # A refund made in Stripe's dashboard, which we have not heard of yet...
    requests.post(
        f"{world.localstripe}/v1/refunds",
        data={"payment_intent": intent["id"], "amount": 500},
        auth=(stripe.API_KEY, ""),
        timeout=10,
    ).raise_for_status()
    mismatches = _reconcile(world, since)["mismatches"]
    assert [m["problem"] for m in mismatches] == ["refunded amount differ"]
    # ...until its webhook arrives.
    refunded_event = {
        "id": f"evt_{uuid.uuid4().hex}",
        "type": "charge.refunded",
        "data": {
            "object": {
                "object": "charge",
                "payment_intent": intent["id"],
                "amount_refunded": 1500,
                "refunds": {"data": [{"id": f"re_{uuid.uuid4().hex}"}]},
            }
        },
    }
    assert post_webhook(api, refunded_event).json()["outcome"] == "applied"
    assert _reconcile(world, since)["mismatches"] == []
    full = api.post(
        f"/admin/orders/{order['id']}/refunds", json={"reason": "returned"}, token=api.admin
    )
    assert full.json()["status"] == "REFUNDED"
    assert full.json()["payment"]["refunded_amount"] == 4000


def _reconcile(world, since):
    with world.platform.rpc() as rpc:
        return rpc.payment.reconcile(
            since.isoformat(), (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
        )


def test_the_reconciliation_command(api, world, monkeypatch, capsys):
    # reset_data emptied our payment records; localstripe still has the earlier tests'
    # payments: each is one we do not know, which is what the report must say.
    known = len(stripe.payment_intents(world.localstripe))
    monkeypatch.setenv("AMQP_URI", world.platform.amqp_uri)
    assert cli.main(["reconcile-payments"]) == 1
    out = capsys.readouterr().out
    assert "provider stripe: 0 checked" in out
    assert out.count("unknown here") == known
    assert f"{known} mismatch(es)" in out


def test_a_timeout_after_stripe_charged_does_not_charge_twice(api, world):
    """The proxy forwards the authorization (Stripe charges) and holds the answer past
    the provider timeout; the customer's retry, with the same Idempotency-Key, makes
    our service repeat its Stripe idempotency key, which finds the first charge."""
    book = stocked_book(api)
    token, address = shopper(api)
    fill(api, token, book)
    key = str(uuid.uuid4())
    world.proxy.delay_next_answer(4)
    first = checkout(api, token, address, payment_method="pm_card_visa", key=key)
    assert first.status_code in (503, 504), first.text
    retry = checkout(api, token, address, payment_method="pm_card_visa", key=key)
    assert retry.status_code == 201, retry.text
    assert retry.json()["status"] == "PAID"
    assert len(intents_for(world, retry.json()["id"])) == 1


def test_an_unreachable_stripe_fails_fast_and_leaves_nothing_half_paid(api, world):
    book = stocked_book(api, on_hand=5)
    # Five customers ready to pay before Stripe goes away, so their checkouts follow each
    # other closely: all five must fall inside the breaker's reset time.
    customers = []
    for _ in range(5):
        token, address = shopper(api)
        fill(api, token, book)
        customers.append((token, address))
    target = world.proxy.target
    world.proxy.target = "http://127.0.0.1:9"  # Stripe unreachable
    try:
        statuses = []
        attempted_before = len(world.proxy.attempted_keys)
        for token, address in customers:
            response = checkout(api, token, address, payment_method="pm_card_visa")
            statuses.append(response.status_code)
        # The circuit opened at the latest by the last refusal.
        opened_by = time.monotonic()
        assert statuses == [503] * 5
        assert "unavailable" in response.json()["detail"]
        # PAYMENT_BREAKER_FAILURES is 3: the fourth and fifth payments are refused by the
        # open circuit without trying Stripe at all.
        tried = {key for key in world.proxy.attempted_keys[attempted_before:] if key}
        assert 1 <= len(tried) <= 3, tried
    finally:
        world.proxy.target = target

    # Every one of those orders settles CANCELLED (nothing was charged) and the stock
    # comes back; after the circuit's reset time, checkouts work again.
    def settled():
        orders = api.get("/admin/orders", params={"limit": 10}, token=api.admin).json()["items"]
        assert len(orders) == 5 and {o["status"] for o in orders} == {"CANCELLED"}

    eventually(settled, timeout=90)
    assert stock(api, book)["reserved"] == 0
    # The reset time is the behaviour under test: wait until it has passed, no longer.
    reset = float(api.platform.env["PAYMENT_BREAKER_RESET_SECONDS"])
    time.sleep(max(0.0, opened_by + reset - time.monotonic()))
    token, address = shopper(api)
    fill(api, token, book)
    assert checkout(api, token, address, payment_method="pm_card_visa").json()["status"] == "PAID"
