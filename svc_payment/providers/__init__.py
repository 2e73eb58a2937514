"""Payment providers, chosen by ``PAYMENT_PROVIDER`` (see :func:`provider_named`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from common.config import ENVIRONMENT_ENV, is_production
from svc_payment.providers.base import PaymentProvider
from svc_payment.providers.mock import MockProvider
from svc_payment.providers.stripe_provider import StripeProvider

PROVIDER_NAMES = (MockProvider.name, StripeProvider.name)


class RefusedInProduction(ValueError):
    """The mock provider was configured where real money is expected."""


def provider_named(name: str, config: Mapping[str, Any] | None = None) -> PaymentProvider:
    """The configured provider; an unknown name, a missing Stripe setting, or the mock in
    production stops the service at start-up rather than at the first payment."""
    config = config or {}
    if name == MockProvider.name:
        if is_production(config):
            # A deployment left on a default would mark orders PAID without charging
            # anyone: in production the mock must never be what runs.
            raise RefusedInProduction(
                f"PAYMENT_PROVIDER=mock takes no real payments and is refused when "
                f"{ENVIRONMENT_ENV}=production: set PAYMENT_PROVIDER=stripe (with "
                f"STRIPE_API_KEY and STRIPE_WEBHOOK_SECRET), or run outside production"
            )
        return MockProvider()
    if name == StripeProvider.name:
        return StripeProvider(
            api_key=str(config.get("STRIPE_API_KEY") or ""),
            webhook_secret=str(config.get("STRIPE_WEBHOOK_SECRET") or ""),
            api_base=str(config.get("STRIPE_API_BASE") or "") or None,
            timeout_seconds=float(config.get("STRIPE_TIMEOUT_SECONDS") or 10),
        )
    raise ValueError(f"PAYMENT_PROVIDER={name!r} is not one of {', '.join(PROVIDER_NAMES)}")
