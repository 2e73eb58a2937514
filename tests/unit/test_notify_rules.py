"""svc_notify's rules that need no service: backoff with jitter, webhook signatures,
template rendering."""

from __future__ import annotations

import hashlib
import hmac

import jinja2
import pytest

from svc_notify.channels import (
    WebhookFailed,
    WebhookPoster,
    refused_destination,
    signature_header,
    verify_signature,
)
from svc_notify.domain import (
    CONSUMED,
    WEBHOOK_EVENT_TYPES,
    Recipient,
    RetryPolicy,
    notification_for,
    recipient_for,
    template_context,
)
from svc_notify.rendering import Renderer, format_money


def test_backoff_doubles_within_jitter_and_stops_at_the_cap():
    policy = RetryPolicy(max_attempts=6, base_seconds=10, max_seconds=60)
    assert [policy.delay(n, rand=lambda: 0.0) for n in (1, 2, 3, 4, 5)] == [5, 10, 20, 30, 30]
    assert [policy.delay(n, rand=lambda: 1.0) for n in (1, 2, 3, 4, 5)] == [10, 20, 40, 60, 60]


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body():
    header = signature_header("s3cret", '{"a":1}', now=1_700_000_000)
    expected = hmac.new(b"s3cret", b'1700000000.{"a":1}', hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"
    assert verify_signature("s3cret", header, '{"a":1}', now=1_700_000_100)


@pytest.mark.parametrize(
    ("secret", "body", "now"),
    [
        ("other", '{"a":1}', 1_700_000_000),  # wrong secret
        ("s3cret", '{"a":2}', 1_700_000_000),  # body changed
        ("s3cret", '{"a":1}', 1_700_000_301),  # too old: a replayed call
    ],
)
def test_a_wrong_secret_a_changed_body_or_an_old_signature_is_refused(secret, body, now):
    header = signature_header("s3cret", '{"a":1}', now=1_700_000_000)
    assert not verify_signature(secret, header, body, now=now)


def test_money_is_shown_in_the_currencys_minor_units():
    assert format_money({"amount": 4000, "currency": "EUR"}) == "40.00 EUR"
    assert format_money({"amount": 500, "currency": "JPY"}) == "500 JPY"


def test_every_email_template_renders_and_a_missing_field_is_an_error():
    renderer = Renderer()
    order = {
        "id": "5f0c8a52-2d7e-4b8e-9d0c-1f2e3d4c5b6a",
        "items": [
            {"quantity": 2, "title": "Emma & Co", "line_total": {"amount": 3000, "currency": "EUR"}}
        ],
        "shipping": {"amount": 0, "currency": "EUR"},
        "total": {"amount": 3000, "currency": "EUR"},
        "shipping_address": {"city": "London"},
        "payment": {"status": "refunded"},
    }
    mail = renderer.email("order_paid", {"name": "Ada", "order": order, "preferences_url": ""})
    assert mail["subject"] == "Your order 5f0c8a52 is confirmed"
    assert "Emma & Co" in mail["text"] and "Emma &amp; Co" in mail["html"]
    assert renderer.sms("order_cancelled", {"order": order}) == (
        "Bookstore: order 5f0c8a52 was cancelled."
    )
    without_total = {key: value for key, value in order.items() if key != "total"}
    with pytest.raises(jinja2.UndefinedError):
        renderer.email("order_paid", {"name": "Ada", "order": without_total, "preferences_url": ""})


def resolving_to(*addresses):
    return lambda host: list(addresses)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.9",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata services
        "100.64.0.1",  # carrier-grade NAT
        "0.0.0.0",
        "::1",
        "fc00::1",
        "fe80::1%eth0",
        "::ffff:127.0.0.1",
    ],
)
def test_webhooks_to_addresses_inside_a_network_are_refused(address):
    refused = refused_destination("https://hooks.example.com/in", resolving_to(address))
    assert refused and address in refused


def test_webhooks_go_to_names_whose_every_address_is_public():
    public = resolving_to("93.184.216.34", "2606:2800:220:1::1")
    assert refused_destination("https://hooks.example.com/in", public) is None
    # One private address among public ones is enough to refuse (which one is used
    # is up to the resolver at connection time).
    mixed = resolving_to("93.184.216.34", "10.0.0.5")
    assert "10.0.0.5" in refused_destination("https://hooks.example.com/in", mixed)
    assert "does not resolve" in refused_destination("https://nowhere.invalid/", resolving_to())


def test_a_delivery_to_a_refused_address_fails_before_any_connection():
    poster = WebhookPoster(timeout=1, session=None, resolve=resolving_to("127.0.0.1"))
    with pytest.raises(WebhookFailed, match="destination refused"):
        poster.post("http://rebound.example.com/", "whsec_x", "{}", {})
    allowed = WebhookPoster(timeout=1, session=None, allow_private=True)
    assert allowed.refusal("http://127.0.0.1:9/") is None


def test_loopback_receivers_are_allowed_only_when_asked_and_nothing_else_with_them():
    poster = WebhookPoster(timeout=1, session=None, allow_loopback=True)
    assert poster.refusal("http://127.0.0.1:9000/hooks") is None
    assert poster.refusal("http://[::1]:9000/hooks") is None
    for inside in ("10.0.0.5", "192.168.1.20", "169.254.169.254", "fe80::1"):
        narrow = WebhookPoster(
            timeout=1, session=None, allow_loopback=True, resolve=resolving_to(inside)
        )
        assert inside in narrow.refusal("http://hooks.example.com/"), inside
    assert "127.0.0.1" in WebhookPoster(timeout=1, session=None).refusal("http://127.0.0.1:9/")


def test_a_delivery_is_parked_after_its_last_attempt_or_at_once_when_permanent():
    policy = RetryPolicy(max_attempts=3)
    assert [policy.gives_up(n, permanent=False) for n in (1, 2, 3)] == [False, False, True]
    assert policy.gives_up(1, permanent=True)


def _event(event_type: str, **data) -> dict:
    return {"id": "e1", "type": event_type, "data": data}


def test_account_security_emails_go_by_email_whatever_the_preferences():
    def never_asked():
        raise AssertionError("preferences are not asked for security emails")

    registered = _event("user.registered", user_id="u1", verification_token="t")
    assert notification_for(registered, never_asked, set()) == ("verify_email", {"email"})
    # An account an operator created has no token: nothing to confirm.
    assert notification_for(_event("user.registered", user_id="u1"), never_asked, set()) is None


def test_order_news_goes_by_the_chosen_channels_that_have_a_template():
    paid = _event("order.paid", user_id="u1")

    def both():
        return {"email": True, "sms": True}

    assert notification_for(paid, both, {"order_paid"}) == ("order_paid", {"email", "sms"})
    assert notification_for(paid, both, set()) == ("order_paid", {"email"})
    assert notification_for(paid, lambda: {"email": False, "sms": False}, set()) == (
        "order_paid",
        set(),
    )
    declined = _event("order.cancelled", cancel_reason="payment_declined")
    assert notification_for(declined, both, set()) is None  # payment.failed says it


def test_templates_get_the_token_or_the_order_or_the_payment():
    recipient = Recipient("u1", "ada@example.com", None, "Ada")
    reset = _event("user.password_reset_requested", reset_token="r", reset_expires_at="soon")
    context = template_context(reset, recipient, "https://shop.example")
    assert (context["token"], context["expires_at"]) == ("r", "soon")
    assert context["preferences_url"] == "https://shop.example/account/notifications"
    assert template_context(_event("payment.failed", order_id="o"), recipient, "")["payment"]
    assert template_context(_event("order.paid", order_id="o"), recipient, "")["order"]


def test_order_events_name_their_customer_and_payment_events_ask_the_order():
    class Directory:
        def user(self, user_id):
            return {"email": "lin@example.com", "phone": "+100", "name": "Lin"}

        def order(self, order_id):
            return {"user_id": "u2"} if order_id == "o1" else None

    customer = {"email": "ada@example.com", "name": "Ada"}
    shipped = _event("order.shipped", user_id="u1", customer=customer)
    assert recipient_for(shipped, Directory()) == Recipient("u1", "ada@example.com", None, "Ada")
    failed = _event("payment.failed", order_id="o1")
    assert recipient_for(failed, Directory()) == Recipient("u2", "lin@example.com", "+100", "Lin")
    assert recipient_for(_event("payment.failed", order_id="gone"), Directory()) is None
    assert recipient_for(_event("product.created"), Directory()) is None


def test_an_anomaly_is_an_email_to_the_operators_and_a_webhook_type():
    anomaly = {
        "window_start": "2026-12-07T12:00:00Z",
        "window_end": "2026-12-07T12:05:00Z",
        "currency": "EUR",
        "metric": "orders",
        "value": 2.0,
        "baseline": 20.0,
        "score": -8.1,
        "direction": "drop",
    }
    envelope = {"id": "x", "type": "analytics.anomaly.detected", "data": anomaly}
    recipient = recipient_for(envelope, directory=None, admin_email="ops@example.com")
    assert (recipient.user_id, recipient.email) == (None, "ops@example.com")
    assert recipient_for(envelope, directory=None).email is None  # skipped, and audited
    assert notification_for(envelope, lambda: pytest.fail("not a customer's choice"), set()) == (
        "anomaly_detected",
        {"email"},
    )
    context = template_context(envelope, recipient, "https://shop.example")
    mail = Renderer().email("anomaly_detected", context)
    assert mail["subject"] == "Anomaly: orders drop at 2026-12-07T12:00:00Z (EUR)"
    assert "was 2 where 20 is usual" in mail["text"]
    assert "choose which messages" not in mail["html"]
    assert "analytics.anomaly.detected" in WEBHOOK_EVENT_TYPES
    assert CONSUMED["analytics"] == ("analytics.anomaly.detected",)
