"""Stripe, through the official SDK: PaymentIntents, refunds, signed webhooks.

Card details never reach us: the customer's client turns the card into a PaymentMethod
with Stripe.js and we only ever see its id (``pm_...``). Every call that moves money
carries an idempotency key derived from our own ids (the order, the refund), so a call
retried after a lost answer finds what the first one did instead of charging again.
Calls have a timeout and no hidden retries; a circuit breaker (in the service) turns a
Stripe that keeps failing into fast 503s.

The API base address is configurable (``STRIPE_API_BASE``) so tests run against
localstripe on loopback.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Any

import stripe

from common.errors import DependencyUnavailable, InvalidInput, InvalidParameter
from svc_payment.providers.base import Authorization, Card, ProviderEvent, ProviderPayment

#: Stripe event types we act on, and what they mean for our records.
EVENT_KINDS = {
    "payment_intent.succeeded": "succeeded",
    "payment_intent.payment_failed": "failed",
    "charge.refunded": "refunded",
}
WEBHOOK_TOLERANCE_SECONDS = 300


def is_provider_failure(error: BaseException) -> bool:
    """Stripe's fault (unreachable, timing out, failing): what trips the circuit."""
    return isinstance(error, (DependencyUnavailable, stripe.error.APIConnectionError)) or (
        isinstance(error, stripe.error.StripeError) and (error.http_status or 0) >= 500
    )


class StripeProvider:
    name = "stripe"

    def __init__(
        self,
        *,
        api_key: str,
        webhook_secret: str,
        api_base: str | None = None,
        timeout_seconds: float = 10.0,
    ) -> None:
        if not api_key:
            raise ValueError("STRIPE_API_KEY is not set")
        if not webhook_secret:
            raise ValueError("STRIPE_WEBHOOK_SECRET is not set: webhooks could not be verified")
        self._webhook_secret = webhook_secret
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base} if api_base else None,
            max_network_retries=0,
            http_client=stripe.RequestsClient(timeout=timeout_seconds),
        )

    def _call(self, function: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except stripe.error.APIConnectionError as error:
            raise DependencyUnavailable(
                "The payment provider did not answer; nothing was charged twice, try again.",
                {"dependency": "stripe", "reason": type(error).__name__},
            ) from None

    def authorize(
        self, *, order_id: str, amount: int, currency: str, payment_method: str
    ) -> Authorization:
        if not payment_method.startswith("pm_"):
            raise InvalidInput(
                "payment_method: with Stripe, send a PaymentMethod id (pm_...) made by "
                "Stripe.js; card numbers never go through our API.",
                {"field": "payment_method"},
            )
        try:
            intent = self._call(
                self._client.v1.payment_intents.create,
                params={
                    "amount": amount,
                    "currency": currency.lower(),
                    "payment_method": payment_method,
                    "payment_method_types": ["card"],
                    "confirm": True,
                    "metadata": {"order_id": order_id},
                },
                options={"idempotency_key": f"bookstore-authorize-{order_id}"},
            )
        except stripe.error.CardError as error:
            code = getattr(error, "decline_code", None) or error.code or "card_declined"
            reference = _intent_id_of(error)
            return Authorization(
                approved=False,
                decline_code=code,
                reference=reference or f"declined-{order_id}",
                card=Card("unknown", "0000"),
            )
        except stripe.error.InvalidRequestError as error:
            if error.param in ("payment_method", None) or error.code == "resource_missing":
                raise InvalidInput(
                    "payment_method: Stripe does not know this payment method.",
                    {"field": "payment_method"},
                ) from None
            raise
        return _authorization(intent.to_dict())

    def refund(
        self, *, reference: str, amount: int, currency: str, reason: str, idempotency_key: str
    ) -> str:
        refund = self._call(
            self._client.v1.refunds.create,
            params={
                "payment_intent": reference,
                "amount": amount,
                "metadata": {"reason": reason[:500]},
            },
            options={"idempotency_key": f"bookstore-refund-{idempotency_key}"},
        )
        return refund.id

    def cancel(self, *, reference: str) -> None:
        # Already succeeded, failed or canceled: nothing to give up.
        with contextlib.suppress(stripe.error.InvalidRequestError):
            self._call(self._client.v1.payment_intents.cancel, reference)

    def fetch(self, *, reference: str) -> ProviderPayment | None:
        try:
            intent = self._call(self._client.v1.payment_intents.retrieve, reference)
        except stripe.error.InvalidRequestError:
            return None
        return _provider_payment(intent.to_dict())

    def list_payments(self, *, since: datetime, until: datetime) -> list[ProviderPayment] | None:
        window = {"gte": int(since.timestamp()), "lte": int(until.timestamp()) + 1}
        try:
            page = self._call(
                self._client.v1.payment_intents.list, params={"limit": 100, "created": window}
            )
        except stripe.error.InvalidRequestError:
            # An API without range filters (localstripe): list everything, filter here.
            page = self._call(self._client.v1.payment_intents.list, params={"limit": 100})
        return [
            _provider_payment(intent.to_dict())
            for intent in page.auto_paging_iter()
            if window["gte"] <= int(intent["created"]) <= window["lte"]
        ]

    def parse_webhook(self, payload: str, signature: str | None) -> ProviderEvent:
        try:
            event = stripe.Webhook.construct_event(
                payload, signature, self._webhook_secret, tolerance=WEBHOOK_TOLERANCE_SECONDS
            )
        except stripe.error.SignatureVerificationError:
            raise InvalidParameter(
                "The Stripe-Signature does not match this payload (or is too old).",
                {"parameter": "Stripe-Signature"},
            ) from None
        except ValueError:
            raise InvalidParameter(
                "The webhook payload is not JSON.", {"parameter": "body"}
            ) from None
        event = event.to_dict()
        obj = event["data"]["object"]
        kind = EVENT_KINDS.get(event["type"])
        if kind == "refunded":
            refunds = (obj.get("refunds") or {}).get("data") or []
            return ProviderEvent(
                id=event["id"],
                type=event["type"],
                kind=kind,
                reference=obj.get("payment_intent"),
                refunded_amount=obj.get("amount_refunded"),
                refund_reference=refunds[0]["id"] if refunds else None,
            )
        error = obj.get("last_payment_error") or {}
        return ProviderEvent(
            id=event["id"],
            type=event["type"],
            kind=kind,
            reference=obj.get("id"),
            decline_code=(error.get("decline_code") or error.get("code"))
            if kind == "failed"
            else None,
        )


def _intent_id_of(error: stripe.error.StripeError) -> str | None:
    intent = getattr(getattr(error, "error", None), "payment_intent", None)
    return getattr(intent, "id", None) if intent is not None else None


def _card_of(intent: Any) -> Card:
    charge = intent.get("latest_charge")
    details = charge.get("payment_method_details") if isinstance(charge, dict) else None
    card = (details or {}).get("card") or {}
    return Card(card.get("brand") or "card", card.get("last4") or "0000")


def _authorization(intent: Any) -> Authorization:
    status = intent["status"]
    if status == "succeeded":
        return Authorization(True, None, intent["id"], _card_of(intent))
    if status == "requires_action":
        return Authorization(
            approved=False,
            decline_code=None,
            reference=intent["id"],
            card=_card_of(intent),
            requires_action=True,
            next_action=dict(intent.get("next_action") or {}),
            client_secret=intent.get("client_secret"),
        )
    error = intent.get("last_payment_error") or {}
    code = error.get("decline_code") or error.get("code") or status
    return Authorization(False, code, intent["id"], _card_of(intent))


_STATUSES = {
    "succeeded": "succeeded",
    "requires_action": "requires_action",
    "requires_confirmation": "requires_action",
    "processing": "requires_action",
    "canceled": "canceled",
}


def _provider_payment(intent: Any) -> ProviderPayment:
    charge = intent.get("latest_charge")
    refunded = charge.get("amount_refunded", 0) if isinstance(charge, dict) else 0
    return ProviderPayment(
        reference=intent["id"],
        order_id=(intent.get("metadata") or {}).get("order_id"),
        status=_STATUSES.get(intent["status"], "failed"),
        amount=intent["amount"],
        currency=str(intent["currency"]).upper(),
        refunded_amount=refunded or 0,
    )
