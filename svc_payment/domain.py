"""The payment's refund rules, in plain Python (no broker, no database): what may be
refunded and how much. The sum of a payment's refunds never exceeds what was paid;
svc_payment/payments.py applies these under the payment's row lock, so concurrent
refunds see each other's amounts."""

from __future__ import annotations

from typing import Any

from common.errors import InvalidInput

AUTHORIZED, REFUNDED = "authorized", "refunded"
#: A payment in any other status took no money, so there is nothing to give back.
REFUNDABLE_STATUSES = (AUTHORIZED, REFUNDED)
MAX_REFUND_REASON = 500


def check_refund_reason(reason: Any) -> str:
    if not isinstance(reason, str) or not reason.strip() or len(reason) > MAX_REFUND_REASON:
        raise InvalidInput(f"reason: 1 to {MAX_REFUND_REASON} characters.", {"field": "reason"})
    return reason


def refundable(paid: int, refunded: int | None) -> int:
    """What is left of a payment to refund."""
    return paid - (refunded or 0)


def refund_amount(requested: Any, left: int) -> int:
    """The amount to refund: all that is left (``requested`` None), or part of it; never
    more than is left, never nothing."""
    amount = left if requested is None else requested
    # bool is an int in Python; True is not an amount.
    if not isinstance(amount, int) or isinstance(amount, bool) or not 0 < amount <= left:
        raise InvalidInput(
            f"amount: between 1 and {left}, what is left of the payment to refund.",
            {"field": "amount", "refundable": left},
        )
    return amount


def fully_refunded(paid: int, refunded: int) -> bool:
    return refunded >= paid


def refunded_elsewhere(provider_total: int | None, ours: int | None) -> int:
    """A refund made outside our API (Stripe's dashboard): the provider's total beyond
    the refunds we know of, 0 when there is none (ours are already counted)."""
    return max((provider_total or 0) - (ours or 0), 0)
