"""The ``payment`` nameko service: thin entrypoints over svc_payment's use cases."""

from __future__ import annotations

import uuid
from typing import Any

from nameko.containers import WorkerContext
from nameko.extensions import DependencyProvider

from common.circuit import CircuitBreaker
from common.context import CallContextProvider
from common.db import check_database, database
from common.errors import BookstoreError, Conflict
from common.events import OutboxRelay
from common.metrics import ServiceMetrics
from common.rpc import rpc
from svc_payment import payments
from svc_payment.models import Base, PaymentOutboxMessage
from svc_payment.providers import PaymentProvider, configured_provider
from svc_payment.providers.base import ProviderEvent
from svc_payment.providers.stripe_provider import is_provider_failure
from svc_payment.settings import Settings


class GuardedProvider:
    """The configured provider behind a circuit breaker: when it keeps failing, calls
    fail fast (503) instead of each waiting for its timeout. Webhook parsing is local
    work and is not guarded."""

    def __init__(self, provider: PaymentProvider, breaker: CircuitBreaker) -> None:
        self._provider = provider
        self.breaker = breaker
        self.name = provider.name

    def _guarded(self, method: str, **kwargs: Any) -> Any:
        function = getattr(self._provider, method)
        return self.breaker.call(lambda: function(**kwargs), is_failure=is_provider_failure)

    def authorize(self, **kwargs: Any) -> Any:
        return self._guarded("authorize", **kwargs)

    def refund(self, **kwargs: Any) -> Any:
        return self._guarded("refund", **kwargs)

    def cancel(self, **kwargs: Any) -> Any:
        return self._guarded("cancel", **kwargs)

    def fetch(self, **kwargs: Any) -> Any:
        return self._guarded("fetch", **kwargs)

    def list_payments(self, **kwargs: Any) -> Any:
        return self._guarded("list_payments", **kwargs)

    def parse_webhook(self, payload: str, signature: str | None) -> Any:
        return self._provider.parse_webhook(payload, signature)


class Provider(DependencyProvider):
    """The payment provider ``PAYMENT_PROVIDER`` names, made once per service instance."""

    def setup(self) -> None:
        settings = Settings.current()
        self.provider = GuardedProvider(
            configured_provider(settings),
            CircuitBreaker(
                "the payment provider",
                failure_threshold=settings.breaker_failures,
                reset_after=settings.breaker_reset_seconds,
            ),
        )

    def get_dependency(self, worker_ctx: WorkerContext) -> PaymentProvider:
        return self.provider


class PaymentService:
    name = "payment"

    db = database(Base)
    call_context = CallContextProvider()
    metrics = ServiceMetrics()
    outbox_relay = OutboxRelay(Base, PaymentOutboxMessage)
    provider = Provider()

    @rpc
    def ping(self) -> dict[str, Any]:
        with self.db.get_session() as session:
            check_database(session)
        return {
            "service": self.name,
            **self.outbox_relay.health(),
            "provider": self.provider.name,
        }

    @rpc(expected_exceptions=BookstoreError)
    def authorize(
        self, order_id: str, amount: int, currency: str, payment_method: str, not_after: str
    ) -> dict[str, Any]:
        with self.db.get_session() as session:
            return payments.authorize(
                session,
                self.provider,
                order_id=order_id,
                amount=amount,
                currency=currency,
                payment_method=payment_method,
                not_after=not_after,
            )

    @rpc(expected_exceptions=BookstoreError)
    def get_payment(self, order_id: str) -> dict[str, Any]:
        with self.db.get_session() as session:
            return payments.get_payment(session, order_id)

    @rpc(expected_exceptions=BookstoreError)
    def refund(self, order_id: str, reason: str, amount: int | None = None) -> dict[str, Any]:
        """All that is left of the payment (``amount`` None), or part of it."""
        with self.db.get_session() as session:
            return payments.refund(session, self.provider, order_id, reason, amount)

    @rpc(expected_exceptions=BookstoreError)
    def list_refunds(self, order_id: str) -> list[dict[str, Any]]:
        with self.db.get_session() as session:
            return payments.list_refunds(session, order_id)

    @rpc(expected_exceptions=BookstoreError)
    def handle_webhook(self, payload: str, signature: str | None) -> dict[str, Any]:
        """A provider webhook, as received (the raw body and its signature header)."""
        event = self.provider.parse_webhook(payload, signature)
        with self.db.get_session() as session:
            return payments.apply_provider_event(session, event)

    @rpc(expected_exceptions=BookstoreError)
    def cancel_unfinished(self, order_id: str) -> dict[str, Any]:
        with self.db.get_session() as session:
            return payments.cancel_unfinished(session, self.provider, order_id)

    @rpc(expected_exceptions=BookstoreError)
    def reconcile(self, since: str, until: str) -> dict[str, Any]:
        """Operators: our records against the provider's for payments made in [since, until]."""
        window = (payments.parse_deadline(since), payments.parse_deadline(until))
        with self.db.get_session() as session:
            return payments.reconcile(session, self.provider, *window)

    @rpc(expected_exceptions=BookstoreError)
    def simulate_action(self, order_id: str, succeeded: bool) -> dict[str, Any]:
        """Mock provider only: the customer completed (or failed) 3-D Secure, as Stripe
        would then tell us by webhook. Lets the asynchronous path run with no account."""
        if self.provider.name != "mock":
            raise Conflict("Only the mock provider's payments can be completed by hand.")
        with self.db.get_session() as session:
            payment = payments.find_payment(session, order_id)
            event = ProviderEvent(
                id=f"mock_evt_{uuid.uuid4().hex}",
                type="mock.action_completed",
                kind="succeeded" if succeeded else "failed",
                reference=payment.provider_reference,
                decline_code=None if succeeded else "authentication_failed",
            )
            return payments.apply_provider_event(session, event)

    @rpc(expected_exceptions=BookstoreError)
    def list_attempts(self, order_id: str) -> list[dict[str, Any]]:
        with self.db.get_session() as session:
            return payments.list_attempts(session, order_id)
