"""What the payment service needs from a payment provider (the built-in mock, or Stripe).

The service owns the rules (one payment per order, expiry, events, the attempt log); a
provider only talks to the card network. So a provider is small: authorize an amount
on a payment method, refund an authorization.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol


@dataclass(frozen=True)
class Card:
    """What we keep of a card: enough for a receipt, never the number."""

    brand: str
    last4: str


@dataclass(frozen=True)
class Authorization:
    """A provider's answer to an authorization request.

    A decline is an answer, not an error: the provider was reached and said no
    (``approved`` false, Stripe's ``decline_code``). Errors (bad input, provider away)
    are raised.
    """

    approved: bool
    decline_code: str | None
    reference: str
    card: Card
    #: The customer must authenticate (3-D Secure) before the provider decides; the
    #: outcome arrives later (a webhook). ``approved`` is False meanwhile.
    requires_action: bool = False
    next_action: dict[str, Any] | None = None
    client_secret: str | None = None


@dataclass(frozen=True)
class ProviderPayment:
    """What the provider's own records say about one payment (for reconciliation)."""

    reference: str
    order_id: str | None
    #: ``succeeded``, ``requires_action``, ``failed`` or ``canceled``.
    status: str
    amount: int
    currency: str
    refunded_amount: int


@dataclass(frozen=True)
class ProviderEvent:
    """A provider webhook, verified and reduced to what our records need."""

    id: str
    #: The provider's event type, kept as received (``payment_intent.succeeded``...).
    type: str
    #: ``succeeded``, ``failed``, ``refunded``; None for a type we do not act on.
    kind: str | None
    reference: str | None
    decline_code: str | None = None
    #: For ``refunded``: the provider's total refunded so far, and its latest refund.
    refunded_amount: int | None = None
    refund_reference: str | None = None


class PaymentProvider(Protocol):
    #: The name ``PAYMENT_PROVIDER`` selects it by, stored with each payment.
    name: str

    def authorize(
        self, *, order_id: str, amount: int, currency: str, payment_method: str
    ) -> Authorization:
        """Authorizes ``amount`` (minor units of ``currency``) on ``payment_method``.

        ``order_id`` is the provider-side idempotency key: a retried call after a lost
        answer must not authorize twice. Raises :class:`common.errors.InvalidInput`
        (field ``payment_method``) for a method the provider does not accept.
        """
        ...

    def refund(
        self, *, reference: str, amount: int, currency: str, reason: str, idempotency_key: str
    ) -> str:
        """Refunds ``amount`` of the payment ``reference`` (all or part of it); returns the
        refund's reference. ``idempotency_key`` makes a retried refund a no-op."""
        ...

    def cancel(self, *, reference: str) -> None:
        """Gives up on an authorization still waiting for the customer's action."""
        ...

    def fetch(self, *, reference: str) -> ProviderPayment | None:
        """The provider's record of one payment (None: the provider keeps none)."""
        ...

    def list_payments(self, *, since: datetime, until: datetime) -> list[ProviderPayment] | None:
        """The provider's payments created in [since, until] (None: it keeps no records)."""
        ...

    def parse_webhook(self, payload: str, signature: str | None) -> ProviderEvent:
        """Verifies a webhook's signature and reads it; raises
        :class:`common.errors.InvalidParameter` when it is not authentic or not readable."""
        ...
