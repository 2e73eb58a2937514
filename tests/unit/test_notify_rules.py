"""svc_notify's rules that need no service: backoff with jitter, webhook signatures,
template rendering."""

from __future__ import annotations

import hashlib
import hmac

import jinja2
import pytest

from svc_notify.channels import signature_header, verify_signature
from svc_notify.dispatch import RetryPolicy
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
