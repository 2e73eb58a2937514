"""The built-in mock provider: Stripe's test payment methods and test cards, offline.

It answers the way Stripe's test mode does for the same inputs, so a checkout tested
against the mock behaves the same against Stripe in test mode:

- Stripe test PaymentMethod ids (``pm_card_visa``, ``pm_card_chargeDeclined``...);
  an id not in Stripe's test set is refused as invalid input (Stripe: ``resource_missing``).
- Raw Stripe test card numbers (mock only; a real integration never sees card numbers):
  the documented decline cards decline with their code, and any other number that
  passes the Luhn check approves, as Stripe's generic test cards do.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from common.errors import InvalidInput, InvalidParameter
from svc_payment import cards
from svc_payment.providers.base import Authorization, Card, ProviderEvent, ProviderPayment

# Card declined (Stripe's error code ``card_declined`` and its ``decline_code``s), and
# the errors Stripe reports under their own code: we surface the most specific one.
CARD_DECLINED = "card_declined"
INSUFFICIENT_FUNDS = "insufficient_funds"
LOST_CARD = "lost_card"
STOLEN_CARD = "stolen_card"
FRAUDULENT = "fraudulent"
VELOCITY_EXCEEDED = "card_velocity_exceeded"
EXPIRED_CARD = "expired_card"
INCORRECT_CVC = "incorrect_cvc"
PROCESSING_ERROR = "processing_error"

# https://docs.stripe.com/testing: PaymentMethod id -> (card, decline code or None).
TEST_PAYMENT_METHODS: dict[str, tuple[Card, str | None]] = {
    "pm_card_visa": (Card("visa", "4242"), None),
    "pm_card_visa_debit": (Card("visa", "5556"), None),
    "pm_card_mastercard": (Card("mastercard", "4444"), None),
    "pm_card_mastercard_debit": (Card("mastercard", "8210"), None),
    "pm_card_mastercard_prepaid": (Card("mastercard", "5100"), None),
    "pm_card_amex": (Card("amex", "8431"), None),
    "pm_card_discover": (Card("discover", "1117"), None),
    "pm_card_diners": (Card("diners", "0004"), None),
    "pm_card_jcb": (Card("jcb", "0505"), None),
    "pm_card_unionpay": (Card("unionpay", "0005"), None),
    "pm_card_chargeDeclined": (Card("visa", "0002"), CARD_DECLINED),
    "pm_card_chargeDeclinedInsufficientFunds": (Card("visa", "9995"), INSUFFICIENT_FUNDS),
    "pm_card_chargeDeclinedFraudulent": (Card("visa", "0019"), FRAUDULENT),
    "pm_card_chargeDeclinedExpiredCard": (Card("visa", "0069"), EXPIRED_CARD),
    "pm_card_chargeDeclinedIncorrectCvc": (Card("visa", "0127"), INCORRECT_CVC),
    "pm_card_chargeDeclinedProcessingError": (Card("visa", "0119"), PROCESSING_ERROR),
    "pm_card_visa_chargeDeclined": (Card("visa", "0002"), CARD_DECLINED),
    "pm_card_visa_chargeDeclinedInsufficientFunds": (Card("visa", "9995"), INSUFFICIENT_FUNDS),
    "pm_card_visa_chargeDeclinedLostCard": (Card("visa", "9987"), LOST_CARD),
    "pm_card_visa_chargeDeclinedStolenCard": (Card("visa", "9979"), STOLEN_CARD),
    "pm_card_visa_chargeDeclinedVelocityLimitExceeded": (Card("visa", "6975"), VELOCITY_EXCEEDED),
}

# https://docs.stripe.com/testing#declined-payments: card number -> decline code.
DECLINING_CARDS: dict[str, str] = {
    "4000000000000002": CARD_DECLINED,
    "4000000000009995": INSUFFICIENT_FUNDS,
    "4000000000009987": LOST_CARD,
    "4000000000009979": STOLEN_CARD,
    "4100000000000019": FRAUDULENT,
    "4000000000006975": VELOCITY_EXCEEDED,
    "4000000000000069": EXPIRED_CARD,
    "4000000000000127": INCORRECT_CVC,
    "4000000000000119": PROCESSING_ERROR,
}

# 3-D Secure: the payment waits for the customer (https://docs.stripe.com/testing#regulatory-cards).
AUTHENTICATION_REQUIRED = "authentication_required"
TEST_PAYMENT_METHODS["pm_card_authenticationRequired"] = (
    Card("visa", "3184"),
    AUTHENTICATION_REQUIRED,
)
TEST_PAYMENT_METHODS["pm_card_threeDSecure2Required"] = (
    Card("visa", "3220"),
    AUTHENTICATION_REQUIRED,
)
DECLINING_CARDS["4000002760003184"] = AUTHENTICATION_REQUIRED
DECLINING_CARDS["4000002500003155"] = AUTHENTICATION_REQUIRED
DECLINING_CARDS["4000000000003220"] = AUTHENTICATION_REQUIRED

# References are derived from the order, as a provider's idempotency key would make
# them: asking twice for one order names the same authorization.
_REFERENCES = uuid.UUID("6f1d7c5e-3a51-4c43-9f3a-1d0b9b6c2a10")


def _invalid_method(reason: str) -> InvalidInput:
    return InvalidInput(f"payment_method: {reason}", {"field": "payment_method"})


def resolve(payment_method: str) -> tuple[Card, str | None]:
    """The card a payment method stands for and the decline code it produces (None:
    approves). Raises :class:`InvalidInput` for anything the mock does not accept; the
    message never repeats a card number."""
    if not isinstance(payment_method, str) or not payment_method:
        raise _invalid_method("a payment method id or test card number is required.")
    if payment_method.startswith("pm_"):
        if payment_method not in TEST_PAYMENT_METHODS:
            raise _invalid_method("no such payment method.")
        return TEST_PAYMENT_METHODS[payment_method]
    if not cards.looks_like_card_number(payment_method):
        raise _invalid_method("not a payment method id or a card number.")
    digits = cards.digits_of(payment_method)
    if not cards.valid_card_number(digits):
        raise _invalid_method("the card number is not valid.")
    return Card(cards.brand_of(digits), digits[-4:]), DECLINING_CARDS.get(digits)


class MockProvider:
    name = "mock"

    def authorize(
        self, *, order_id: str, amount: int, currency: str, payment_method: str
    ) -> Authorization:
        card, decline_code = resolve(payment_method)
        reference = f"mock_pi_{uuid.uuid5(_REFERENCES, str(order_id)).hex}"
        if decline_code == AUTHENTICATION_REQUIRED:
            # Completed by payment.simulate_action (the mock has no customer to ask).
            return Authorization(
                approved=False,
                decline_code=None,
                reference=reference,
                card=card,
                requires_action=True,
                next_action={
                    "type": "redirect_to_url",
                    "redirect_to_url": {
                        "url": f"https://mock-provider.invalid/3ds/{reference}",
                        "return_url": None,
                    },
                },
                client_secret=f"{reference}_secret",
            )
        return Authorization(
            approved=decline_code is None,
            decline_code=decline_code,
            reference=reference,
            card=card,
        )

    def refund(
        self, *, reference: str, amount: int, currency: str, reason: str, idempotency_key: str
    ) -> str:
        return f"mock_re_{uuid.uuid5(_REFERENCES, idempotency_key).hex}"

    def cancel(self, *, reference: str) -> None:
        """Nothing to tell: the mock holds no state of its own."""

    def fetch(self, *, reference: str) -> ProviderPayment | None:
        return None  # the mock keeps no records of its own

    def list_payments(self, *, since: datetime, until: datetime) -> list[ProviderPayment] | None:
        return None

    def parse_webhook(self, payload: str, signature: str | None) -> ProviderEvent:
        raise InvalidParameter(
            "The mock payment provider sends no webhooks.", {"parameter": "Stripe-Signature"}
        )
