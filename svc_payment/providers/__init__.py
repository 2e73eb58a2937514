"""Payment providers, chosen by ``PAYMENT_PROVIDER`` (see :func:`configured_provider`)."""

from __future__ import annotations

from svc_payment.providers.base import PaymentProvider
from svc_payment.providers.mock import MockProvider
from svc_payment.providers.stripe_provider import StripeProvider
from svc_payment.settings import Settings

PROVIDER_NAMES = (MockProvider.name, StripeProvider.name)


def configured_provider(settings: Settings) -> PaymentProvider:
    """The provider the settings name; they have already refused an unknown name, a
    missing Stripe setting and the mock in production (svc_payment/settings.py)."""
    if settings.provider == StripeProvider.name:
        return StripeProvider(
            api_key=settings.stripe_api_key.get_secret_value(),
            webhook_secret=settings.stripe_webhook_secret.get_secret_value(),
            api_base=settings.stripe_api_base or None,
            timeout_seconds=settings.stripe_timeout_seconds,
        )
    return MockProvider()
