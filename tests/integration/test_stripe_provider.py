"""The Stripe provider (the official SDK) against localstripe on loopback: no services,
just the provider object and a fake Stripe API that speaks Stripe's protocol."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from common.errors import DependencyUnavailable, InvalidInput, InvalidParameter
from svc_payment.providers.stripe_provider import StripeProvider
from tests import stripe_support


@pytest.fixture(scope="module")
def stripe_url(tmp_path_factory):
    with stripe_support.localstripe(tmp_path_factory.mktemp("localstripe") / "log") as url:
        yield url


@pytest.fixture
def provider(stripe_url):
    return StripeProvider(
        api_key=stripe_support.API_KEY,
        webhook_secret=stripe_support.WEBHOOK_SECRET,
        api_base=stripe_url,
        timeout_seconds=5,
    )


def authorize(provider, payment_method, amount=2500):
    return provider.authorize(
        order_id=str(uuid.uuid4()), amount=amount, currency="EUR", payment_method=payment_method
    )


def test_an_approved_payment(provider):
    result = authorize(provider, "pm_card_visa")
    assert result.approved and not result.requires_action
    assert result.reference.startswith("pi_")
    record = provider.fetch(reference=result.reference)
    assert (record.status, record.amount, record.currency) == ("succeeded", 2500, "EUR")


def test_a_declined_card(provider):
    result = authorize(provider, "pm_card_chargeCustomerFail")
    assert not result.approved
    assert result.decline_code == "card_declined"


def test_three_d_secure_waits_for_the_customer(provider, stripe_url):
    method = stripe_support.payment_method(stripe_url, "4000002760003184")
    result = authorize(provider, method)
    assert result.requires_action and not result.approved
    assert result.client_secret.startswith(result.reference)
    assert result.next_action["type"] == "use_stripe_sdk"
    stripe_support.authenticate(stripe_url, result.reference, result.client_secret, success=True)
    assert provider.fetch(reference=result.reference).status == "succeeded"


def test_card_numbers_and_unknown_methods_are_refused(provider):
    with pytest.raises(InvalidInput):
        authorize(provider, "4242424242424242")
    with pytest.raises(InvalidInput):
        authorize(provider, "pm_does_not_exist")


def test_partial_then_full_refunds(provider):
    reference = authorize(provider, "pm_card_visa", amount=3000).reference
    provider.refund(
        reference=reference, amount=1000, currency="EUR", reason="dent", idempotency_key="a"
    )
    provider.refund(
        reference=reference, amount=2000, currency="EUR", reason="rest", idempotency_key="b"
    )
    assert provider.fetch(reference=reference).refunded_amount == 3000


def test_listing_for_reconciliation(provider):
    since = datetime.now(UTC) - timedelta(minutes=1)
    reference = authorize(provider, "pm_card_visa").reference
    listed = provider.list_payments(since=since, until=datetime.now(UTC) + timedelta(minutes=1))
    assert reference in {payment.reference for payment in listed}


def test_webhook_signatures(provider):
    payload = json.dumps(
        {
            "id": "evt_1",
            "type": "payment_intent.succeeded",
            "data": {"object": {"id": "pi_1", "object": "payment_intent"}},
        }
    )
    event = provider.parse_webhook(payload, stripe_support.sign(payload))
    assert (event.kind, event.reference) == ("succeeded", "pi_1")
    with pytest.raises(InvalidParameter):
        provider.parse_webhook(payload, stripe_support.sign(payload, secret="whsec_forged"))
    with pytest.raises(InvalidParameter):  # five minutes and more: replayed or stale
        provider.parse_webhook(
            payload, stripe_support.sign(payload, timestamp=int(time.time()) - 600)
        )
    with pytest.raises(InvalidParameter):
        provider.parse_webhook(payload + " ", stripe_support.sign(payload))
    with pytest.raises(InvalidParameter):
        provider.parse_webhook(payload, None)


def test_an_unreachable_stripe_is_a_dependency_failure():
    closed = StripeProvider(
        api_key=stripe_support.API_KEY,
        webhook_secret=stripe_support.WEBHOOK_SECRET,
        api_base="http://127.0.0.1:9",  # nothing listens on the discard port
        timeout_seconds=1,
    )
    with pytest.raises(DependencyUnavailable):
        authorize(closed, "pm_card_visa")
