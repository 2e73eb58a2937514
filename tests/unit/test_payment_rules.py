"""svc_payment's rules without a broker: card numbers, the mock provider, inputs."""

from __future__ import annotations

import pytest

from common.errors import InvalidInput
from svc_payment import cards, domain, payments
from svc_payment.providers import MockProvider
from svc_payment.providers.mock import DECLINING_CARDS, TEST_PAYMENT_METHODS, resolve

ORDER = "4a4f1b9e-0c7e-4c39-9d8e-1f3a1c2b3d4e"


@pytest.mark.parametrize(
    ("number", "valid"),
    [
        ("4242424242424242", True),
        ("4242424242424241", False),
        ("378282246310005", True),  # Amex, 15 digits
        ("30569309025904", True),  # Diners, 14 digits
        ("0000000000000000", True),  # passes Luhn; brand unknown
        ("42424242424", False),  # too short
        ("42424242424242424242", False),  # too long
    ],
)
def test_card_number_validity(number, valid):
    assert cards.valid_card_number(number) is valid


@pytest.mark.parametrize(
    ("number", "brand"),
    [
        ("4242424242424242", "visa"),
        ("5555555555554444", "mastercard"),
        ("2223003122003222", "mastercard"),
        ("378282246310005", "amex"),
        ("6011111111111117", "discover"),
        ("3566002020360505", "jcb"),
        ("30569309025904", "diners"),
        ("6200000000000005", "unionpay"),
        ("9999999999999995", "unknown"),
    ],
)
def test_brand_from_prefix(number, brand):
    assert cards.brand_of(number) == brand


@pytest.mark.parametrize(
    ("method", "decline_code"),
    [
        ("pm_card_visa", None),
        ("pm_card_mastercard", None),
        ("pm_card_amex", None),
        ("pm_card_chargeDeclined", "card_declined"),
        ("pm_card_chargeDeclinedInsufficientFunds", "insufficient_funds"),
        ("pm_card_chargeDeclinedExpiredCard", "expired_card"),
        ("pm_card_chargeDeclinedIncorrectCvc", "incorrect_cvc"),
        ("pm_card_chargeDeclinedProcessingError", "processing_error"),
        ("4242424242424242", None),
        ("4242 4242 4242 4242", None),
        ("5555555555554444", None),  # any other Luhn-valid number approves
        ("4000000000000002", "card_declined"),
        ("4000000000009995", "insufficient_funds"),
        ("4000000000000069", "expired_card"),
        ("4000000000000127", "incorrect_cvc"),
        ("4000000000000119", "processing_error"),
    ],
)
def test_mock_answers_like_stripe_test_mode(method, decline_code):
    result = MockProvider().authorize(
        order_id=ORDER, amount=1299, currency="EUR", payment_method=method
    )
    assert result.approved is (decline_code is None)
    assert result.decline_code == decline_code
    assert result.reference.startswith("mock_pi_")
    if not method.startswith("pm_"):
        assert result.card.last4 == method[-4:]


def test_every_declining_card_and_method_declines_and_the_rest_approve():
    for number, code in DECLINING_CARDS.items():
        assert cards.valid_card_number(number), number
        assert resolve(number)[1] == code
    approving = [pm for pm, (_, code) in TEST_PAYMENT_METHODS.items() if code is None]
    assert {"pm_card_visa", "pm_card_mastercard", "pm_card_amex"} <= set(approving)


def test_the_same_order_gets_the_same_reference():
    def reference(order_id: str) -> str:
        return (
            MockProvider()
            .authorize(order_id=order_id, amount=1, currency="EUR", payment_method="pm_card_visa")
            .reference
        )

    first, again = reference(ORDER), reference(ORDER)
    other = reference("0c0b7c1e-2b57-4bd4-8d1c-57c2a1d0a6f1")
    assert first == again != other


@pytest.mark.parametrize(
    "method",
    [
        "pm_card_nonsense",
        "pm_",
        "4242424242424241",  # fails Luhn
        "4242-4242-42",  # too short
        "tok_visa",
        "",
        "card 4242424242424242",
        None,
    ],
)
def test_unacceptable_methods_are_invalid_input_that_never_repeats_the_number(method):
    with pytest.raises(InvalidInput) as error:
        resolve(method)
    assert error.value.extensions == {"field": "payment_method"}
    assert "4242" not in error.value.detail


@pytest.mark.parametrize("amount", [0, -1, 1.5, "12", True, 100_000_001])
def test_bad_amounts(amount):
    with pytest.raises(InvalidInput):
        payments.validate_amount(amount)


def test_deadline_needs_an_offset():
    assert payments.parse_deadline("2026-01-01T10:00:00Z").utcoffset().total_seconds() == 0
    for raw in ("2026-01-01T10:00:00", "tomorrow", None):
        with pytest.raises(InvalidInput):
            payments.parse_deadline(raw)


def test_a_refund_is_never_more_than_what_is_left():
    assert domain.refundable(1000, None) == 1000
    assert domain.refundable(1000, 400) == 600
    assert domain.refund_amount(None, 600) == 600  # all that is left
    assert domain.refund_amount(250, 600) == 250
    for requested in (601, 0, -5, True, 2.5, "100"):
        with pytest.raises(InvalidInput) as refused:
            domain.refund_amount(requested, 600)
        assert refused.value.extensions == {"field": "amount", "refundable": 600}
    with pytest.raises(InvalidInput):
        domain.refund_amount(None, 0)  # nothing left


def test_a_payment_is_fully_refunded_when_the_refunds_reach_the_amount_paid():
    assert not domain.fully_refunded(1000, 999)
    assert domain.fully_refunded(1000, 1000)


def test_a_refund_made_at_the_provider_is_the_difference_with_ours():
    assert domain.refunded_elsewhere(1000, 400) == 600
    assert domain.refunded_elsewhere(400, 400) == 0
    assert domain.refunded_elsewhere(300, 400) == 0  # an older event: nothing new
    assert domain.refunded_elsewhere(None, None) == 0


@pytest.mark.parametrize("reason", ["", "   ", None, 42, "x" * 501])
def test_a_refund_needs_a_reason(reason):
    with pytest.raises(InvalidInput, match="reason: 1 to 500 characters"):
        domain.check_refund_reason(reason)
